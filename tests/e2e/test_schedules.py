"""Issue 6: schedules end to end, on a clock synced against the server's own SNTP.

A real `lotc server --ntp-listen` and `lotc agent --ntp` pair driven by
`lotc console -c`: a schedule fires on time and moves the desired state (so
a server restart does not undo it); the agent fires while the server is
away and the fire is reported once, without the reconcile on return undoing
it; a fire due while the agent was down happens late and says so; bad input
is refused in plain words.

Each console run costs a Python start (a second or more on a busy machine),
so schedules are set a few seconds ahead and related commands share one run.
"""
from __future__ import annotations

import json
import re
import signal
import socket
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.agent_helpers import suspended
from tests.cluster import Cluster, wait_until

PY = sys.executable
SECOND = 1_000_000


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_synced(cluster: Cluster, app_bundle: Path) -> int:
    """Server answering SNTP, agent n1 synced on it, process `web` running; returns its pid."""
    ntp = f"127.0.0.1:{free_udp_port()}"
    # This box's kernel clock is unsynced: the server must vouch for it to be a source.
    cluster.start_server("--ntp-listen", ntp, "--ntp-local-stratum", "8")
    start_agent(cluster)
    wait_until(lambda: (n1 := cluster.agents_view().get("n1")) and n1["online"]
               and n1["clock_source"] == ntp, timeout=15, what="n1 online, synced on the server")
    cluster.console(f"upload n1 app {app_bundle}; start n1 app --name web -- {PY} main.py")
    return int(wait_until(lambda: cluster.processes()[("n1", "web")]["pid"], what="web's pid"))


def start_agent(cluster: Cluster) -> None:
    """Agent n1, its clock synced on the server's --ntp-listen address."""
    ntp = cluster.server_args[cluster.server_args.index("--ntp-listen") + 1]
    cluster.start_agent("n1", extra=("--ntp", ntp))


def iso_in(seconds: float) -> tuple[str, int]:
    """An ISO time `seconds` from now, and the same in UTC microseconds."""
    at_us = (time.time_ns() // 1000 + int(seconds * SECOND)) // 1000 * 1000
    return datetime.fromtimestamp(at_us / SECOND, UTC).isoformat(timespec="milliseconds"), at_us


def console_documents(cluster: Cluster, commands: str) -> list[Any]:
    """`-c "a; b" --json`: one JSON document per command, one after the other."""
    text = cluster.console(commands, json_output=True).stdout
    decoder, documents, index = json.JSONDecoder(), [], 0
    while text[index:].strip():
        index += len(text[index:]) - len(text[index:].lstrip())
        document, index = decoder.raw_decode(text, index)
        documents.append(document)
    return documents


def schedule_id(result: dict[str, Any]) -> int:
    match = re.match(r"schedule (\d+) (set|recorded)", result["results"][0]["message"])
    assert result["ok"] and match, result
    return int(match[1])


@dataclass
class View:
    """What the server shows of n1, from one console run: `ps`, `schedules`, `events`."""

    web: tuple[str, str]  # web's (state, desired)
    schedules: dict[int, dict[str, Any]]
    events: list[dict[str, Any]]

    def fires(self, sid: int) -> list[dict[str, Any]]:
        """The SCHEDULE_FIRED/MISSED events of schedule `sid` (their message names it)."""
        return [e for e in self.events if e["kind"] in ("SCHEDULE_FIRED", "SCHEDULE_MISSED")
                and e["message"].startswith(f"schedule {sid} ")]


def view(cluster: Cluster) -> View:
    ps, listed, events = console_documents(cluster, "ps n1; schedules n1; events n1 -n 1000")
    web = next(p for p in ps["processes"] if p["name"] == "web")
    return View((web["state"], web["desired"]), {s["id"]: s for s in listed["schedules"]},
                events["events"])


def stopped(pid: int) -> bool:
    return suspended(pid)


def test_a_schedule_fires_on_time_and_a_server_restart_keeps_its_effect(
        cluster: Cluster, app_bundle: Path) -> None:
    pid = start_synced(cluster, app_bundle)
    at, at_us = iso_in(6)
    first, second, listed = console_documents(
        cluster, f"schedule n1 web stop at {at}; "
                 "schedule n1 web restart cron '0 3 * * *' --tz Europe/Paris; schedules n1")
    sid, cron = schedule_id(first), schedule_id(second)
    held = {s["id"]: s for s in listed["schedules"]}
    assert held[sid]["at_us"] == held[sid]["next_fire_us"] == at_us
    assert held[sid]["last_fire"] is None and held[sid]["action"] == "STOP"
    assert held[cron]["tz"] == "Europe/Paris" and held[cron]["next_fire_us"] > at_us

    # It fires at the time, not before: watch the process itself.
    assert time.time() < at_us / SECOND - 0.1, "the console took too long: raise the lead"
    assert not stopped(pid)
    seen = wait_until(lambda: stopped(pid) and time.time(), timeout=15, interval=0.005,
                      what="stopped by the schedule")
    assert at_us / SECOND - 0.02 <= seen <= at_us / SECOND + 1.0, (seen - at_us / SECOND)
    now = wait_until(lambda: (v := view(cluster)).fires(sid) and v, what="SCHEDULE_FIRED listed")
    [fired] = now.fires(sid)
    assert fired["kind"] == "SCHEDULE_FIRED" and fired["message"].endswith(", ok"), fired
    assert "UNSYNCED" not in fired["message"] and "LATE" not in fired["message"]
    assert now.web == ("STOPPED", "STOPPED")  # the desired state moved with the fire
    assert now.schedules[sid]["last_fire_us"] == at_us and now.schedules[sid]["next_fire"] is None

    # The table, and unschedule: gone from the server's list and from the agent.
    out = cluster.console(f"schedules; unschedule {cron}").stdout
    assert "0 3 * * * (Europe/Paris)" in out and f"at {at[:19]}" in out
    assert f"schedule {cron} removed" in out
    wait_until(lambda: f"schedule {cron} cleared" in cluster.agent_log("n1"),
               what="cleared on the agent")

    cluster.stop_server()
    cluster.start_server()
    cluster.wait_online("n1", timeout=40)
    # The wait is the test: a reconcile that wrongly resumed web would have done it by now.
    time.sleep(1.0)
    now = view(cluster)
    assert stopped(pid) and now.web == ("STOPPED", "STOPPED") and list(now.schedules) == [sid]


def test_schedules_fire_while_the_server_or_the_agent_is_away(
        cluster: Cluster, app_bundle: Path) -> None:
    pid = start_synced(cluster, app_bundle)
    result = cluster.console("schedule n1 ghost stop cron '0 2 * * *'", check=False)
    assert result.returncode != 0 and "no process 'ghost' on n1" in result.stdout

    # The server is away: the agent fires alone, and the fire is reported once on return,
    # where it moves the desired state before the reconcile could undo the stop.
    at, at_us = iso_in(5)
    sid = schedule_id(cluster.console_json(f"schedule n1 web stop at {at}"))
    cluster.stop_server(signal.SIGKILL)
    assert time.time() < at_us / SECOND, "the console took too long: raise the lead"
    seen = wait_until(lambda: stopped(pid) and time.time(), timeout=15, interval=0.005,
                      what="stopped by the agent alone")
    assert seen >= at_us / SECOND - 0.02
    cluster.start_server()
    cluster.wait_online("n1", timeout=40)
    now = wait_until(lambda: (v := view(cluster)).fires(sid) and v, what="fire reported")
    assert [e["kind"] for e in now.fires(sid)] == ["SCHEDULE_FIRED"]
    assert now.web == ("STOPPED", "STOPPED") and now.schedules[sid]["last_fire_us"] == at_us
    assert stopped(pid), "the reconcile after the server's return undid the scheduled stop"

    # The agent is away when the time comes: on restart it fires late, flagged LATE, once.
    at, at_us = iso_in(5)
    late = schedule_id(cluster.console_json(f"schedule n1 web resume at {at}"))
    cluster.kill_agent("n1")  # SIGKILL; web lives on in its own session
    assert time.time() < at_us / SECOND, "the console took too long: raise the lead"
    # The wait is the test: the time passes (by more than the scheduler's LATE_S = 1 s)
    # while the agent is down.
    time.sleep(max(0.0, at_us / SECOND - time.time()) + 1.5)
    assert stopped(pid)
    start_agent(cluster)
    wait_until(lambda: not stopped(pid), timeout=15, what="resumed late after the restart")
    now = wait_until(lambda: (v := view(cluster)).fires(late) and v.web[1] == "RUNNING" and v,
                     what="late fire reported, desired state following it")
    [fired] = now.fires(late)
    assert fired["kind"] == "SCHEDULE_FIRED" and "LATE" in fired["message"], fired
    assert fired["message"].endswith(", ok") and now.web == ("RUNNING", "RUNNING")
    assert len(now.fires(sid)) == 1  # the earlier fire was not reported again


def test_bad_schedules_are_refused_in_plain_words(cluster: Cluster) -> None:
    cluster.start_server()
    cases = {
        "schedule n1 web stop cron '61 * * * *'": "invalid cron expression '61 * * * *'",
        "schedule n1 web stop cron '0 2 * * *' --tz Mars/Olympus": "unknown time zone",
        "schedule n1 web stop at 2001-01-01T00:00:00Z": "is in the past",
        "schedule nosuch web stop at +1h": "unknown agent 'nosuch'",
        "unschedule 4242": "no schedule with id 4242",
    }
    for command, words in cases.items():
        result = cluster.console(command, check=False)
        assert result.returncode != 0, command
        assert words in result.stdout + result.stderr, (command, result.stdout, result.stderr)
        assert "Traceback" not in result.stderr
    assert cluster.console_json("schedules")["schedules"] == []

