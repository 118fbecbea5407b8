"""Issue 5: nothing the admin asked for is lost by a disconnect or a restart."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil

from lotc.bundle_source import pack
from tests.cluster import Cluster, wait_until

PY = sys.executable


def running_pid(cluster: Cluster, agent: str, name: str) -> int:
    def pid() -> int:
        entry = cluster.processes().get((agent, name), {})
        return int(entry.get("pid") or 0) if entry.get("state") == "RUNNING" else 0
    return int(wait_until(pid, what=f"{agent}/{name} running"))


def copies_of(cluster: Cluster, marker: str) -> list[psutil.Process]:
    return [p for p in cluster.managed() if marker in " ".join(p.info["cmdline"] or ())]


def test_agent_killed_and_restarted_runs_each_process_once(cluster: Cluster, app_bundle: Path) -> None:
    cluster.start_server()
    cluster.start_agent("n1")
    cluster.wait_online("n1")
    cluster.console(f"upload n1 app {app_bundle}; start n1 app --name web -- {PY} main.py web")
    pid = running_pid(cluster, "n1", "web")

    cluster.kill_agent("n1")  # SIGKILL: the process keeps running meanwhile
    assert psutil.pid_exists(pid)
    cluster.start_agent("n1")
    cluster.wait_online("n1")
    assert running_pid(cluster, "n1", "web") == pid  # re-adopted, not started again
    assert [p.pid for p in copies_of(cluster, "main.py web")] == [pid]


def test_commands_given_while_an_agent_is_away_are_applied_on_return(
        cluster: Cluster, app_bundle: Path) -> None:
    cluster.start_server()
    cluster.start_agent("n1")
    cluster.wait_online("n1")
    cluster.console(f"upload n1 old {app_bundle}; upload n1 app {app_bundle}")
    cluster.kill_agent("n1")
    wait_until(lambda: not cluster.agents_view()["n1"]["online"], what="offline verdict")

    out = cluster.console(f"remove n1 old; start n1 app --name late -- {PY} main.py late").stdout
    assert out.count("agent offline") == 2, out
    cluster.start_agent("n1")
    cluster.wait_online("n1")
    running_pid(cluster, "n1", "late")
    wait_until(lambda: not (cluster.root / "state-n1" / "bundles" / "bundles" / "old").exists(),
               what="bundle removed on the agent")
    assert [b["name"] for b in cluster.console_json("bundles n1")["bundles"]] == ["app"]
    assert len(copies_of(cluster, "main.py late")) == 1


def test_server_killed_and_restarted_loses_nothing(cluster: Cluster, app_bundle: Path) -> None:
    cluster.start_server()
    cluster.start_agent("n1")
    cluster.start_agent("n2", "::1")
    cluster.wait_online("n1", "n2")
    cluster.console(f"upload all app {app_bundle}; start all app --name web -- {PY} main.py web")
    pids = {a: running_pid(cluster, a, "web") for a in ("n1", "n2")}
    cluster.console("stop n2 web")

    cluster.stop_server(signal.SIGKILL)
    cluster.start_server()
    cluster.wait_online("n1", "n2", timeout=40)  # agents come back after their backoff
    view = cluster.processes()
    assert view[("n1", "web")]["pid"] == pids["n1"] and view[("n1", "web")]["state"] == "RUNNING"
    assert view[("n2", "web")]["state"] == "STOPPED" and view[("n2", "web")]["desired"] == "STOPPED"
    assert len(copies_of(cluster, "main.py web")) == 2


def test_events_made_while_disconnected_arrive_exactly_once(
        cluster: Cluster, app_bundle: Path) -> None:
    cluster.start_server()
    cluster.start_agent("n1")
    cluster.wait_online("n1")
    cluster.console(f"upload n1 app {app_bundle}; "
                    f"start n1 app --name crashy --restart always -- {PY} main.py crashy")
    first = running_pid(cluster, "n1", "crashy")

    cluster.stop_server(signal.SIGKILL)
    os.kill(first, signal.SIGKILL)  # a crash while the server is away...
    wait_until(lambda: any(p.pid != first for p in copies_of(cluster, "main.py crashy")),
               what="restarted by the agent alone")
    cluster.kill_agent("n1")  # ...and an agent restart before it can report it
    cluster.start_server()
    cluster.start_agent("n1")
    cluster.wait_online("n1", timeout=40)

    def crash_events() -> list[dict[str, object]]:
        events = cluster.console_json("events n1 -n 1000")["events"]
        return [e for e in events if e["process"] == "crashy" and e["signal"] == 9]
    crashes = wait_until(crash_events, what="crash reported after reconnect")
    assert len(crashes) == 1, crashes
    seqs = [e["seq"] for e in cluster.console_json("events n1 -n 1000")["events"] if e["seq"]]
    assert len(seqs) == len(set(seqs)), "an event was stored twice"


def test_interrupted_upload_resumes_and_never_leaves_a_partial_bundle(cluster: Cluster) -> None:
    cluster.start_server()
    cluster.start_agent("n1")
    cluster.wait_online("n1")
    big = cluster.root / "big.bin"
    big.write_bytes(os.urandom(48 * 1024 * 1024))
    console = psutil.Popen(
        [PY, "-m", "lotc.cli", "console", "--server", f"127.0.0.1:{cluster.admin_port}",
         "-c", f"upload n1 big {big}"],
        env={**os.environ, "LOTC_TOKEN": cluster.admin_token},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    blobs = cluster.root / "lotc-blobs"
    wait_until(lambda: any(p.stat().st_size > 0 for p in blobs.glob("*.partial")),
               what="upload under way")
    console.kill()  # the connection is cut mid-upload
    console.wait()
    assert cluster.console_json("bundles n1")["bundles"] == []  # nothing half-there

    cluster.console(f"upload n1 big {big}")
    entry = cluster.console_json("bundles n1")["bundles"][0]
    with pack(big, alias="big") as packed:  # a single file travels as a tar of itself, under its name
        assert entry["size"] == packed.size
    stored = cluster.root / "state-n1" / "bundles" / "bundles" / "big" / "tree" / big.name
    assert stored.read_bytes() == big.read_bytes()
