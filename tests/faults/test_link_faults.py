"""Faults 3 and 4: the server dies under load; the link to an agent breaks without closing.

3. The server is SIGKILLed and restarted while an agent produces a stream of
   events (a crash-looping process, restart policy always): the agent's
   events reach the model exactly once, their seqs unique and contiguous.
4. Through a TCP proxy (tests/fault_proxy.py), two kinds of silent breakage:
   (a) server -> agent bytes vanish (the agent still talks, hears nothing),
   (b) the whole connection stalls (no FIN, no RST, no bytes).
   The agent notices by its silence limit and reconnects; the server calls
   the stalled agent offline only after missed heartbeats + grace, and the
   deaf one never (it kept heartbeating); the processes run throughout;
   commands given meanwhile are applied after the reconnect.
"""
from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path

from lotc.timing import ServerTiming
from protocol.enums import EventKind, ProcessState, Role
from tests import fault_db
from tests.agent_helpers import suspended
from tests.cluster import Cluster, wait_until
from tests.fault_proxy import FaultProxy
from tests.faults.test_agent_killed import background_console, copies

PY = sys.executable
# What the agents derive from the server's TIMING in the link test: 2 x (5 s + 0.5 s).
AGENT_LIMIT_S = ServerTiming(0.5, 2, 1.5, 60.0, ping_s=5.0).link(Role.AGENT).server_silence_limit_s


def crash_app(root: Path) -> Path:
    app = root / "app"
    app.mkdir()
    (app / "crash.py").write_text("import sys, time\ntime.sleep(0.1)\nsys.exit(3)\n")
    (app / "idle.py").write_text("import time\nwhile True:\n    time.sleep(1)\n")
    return app


def outbox_last_seq(cluster: Cluster, agent: str) -> int:
    last = 0
    path = cluster.root / f"state-{agent}" / "outbox" / "events.jsonl"
    for line in path.read_text().splitlines():
        try:
            data = json.loads(line)
        except ValueError:
            continue
        last = max(last, int(data.get("seq", 0)), int(data.get("ack", 0)))
    return last


def test_server_killed_while_events_flow_loses_and_doubles_none(cluster: Cluster) -> None:
    cluster.start_server()
    cluster.start_agent("busy")
    fault_db.wait_online(cluster.db, "busy")
    cluster.console(f"upload busy app {crash_app(cluster.root)}; "
                    f"start busy app --name crashy --restart always -- {PY} crash.py")

    def crashes() -> int:
        return sum(1 for e in fault_db.events(cluster.db, "busy", EventKind.PROCESS_STATE)
                   if e["new_state"] == ProcessState.BACKOFF)
    wait_until(lambda: crashes() >= 1, timeout=30, what="crash loop under way")
    cluster.stop_server(signal.SIGKILL)  # mid-stream: some events stored, not all acked
    stored_before = {e["seq"] for e in fault_db.events(cluster.db, "busy") if e["seq"]}
    cluster.start_server()
    fault_db.wait_online(cluster.db, "busy", timeout=40)

    # The crash loop ends by its restart limit (5 in 60 s): FAILED is the last event.
    def failed() -> bool:
        return fault_db.status(cluster.db, "busy", "crashy").get("state") == ProcessState.FAILED
    wait_until(failed, timeout=60, what="restart limit reached")
    last = outbox_last_seq(cluster, "busy")
    wait_until(lambda: max((e["seq"] or 0 for e in fault_db.events(cluster.db, "busy")),
                           default=0) >= last, timeout=20, what="every event delivered")
    seqs = [e["seq"] for e in fault_db.events(cluster.db, "busy") if e["seq"] is not None]
    assert len(seqs) == len(set(seqs)), "an event was stored twice"
    assert sorted(seqs) == list(range(1, last + 1)), f"lost: {set(range(1, last + 1)) - set(seqs)}"
    assert stored_before <= set(seqs)
    assert crashes() >= 5
    assert "agent busy connected" in cluster.server_log()
    assert cluster.agents["busy"].poll() is None


def test_a_deaf_link_and_a_stalled_link_are_noticed_and_healed(cluster: Cluster) -> None:
    cluster.start_server("--heartbeat", "0.5", "--missed-heartbeats", "2", "--offline-grace", "1.5")
    target = ("127.0.0.1", cluster.agent_port)
    with FaultProxy(target) as deaf_link, FaultProxy(target) as stalled_link:
        cluster.start_agent("deaf", extra=("--server", f"127.0.0.1:{deaf_link.port}"))
        cluster.start_agent("stalled", extra=("--server", f"127.0.0.1:{stalled_link.port}"))
        fault_db.wait_online(cluster.db, "deaf", "stalled")
        app = crash_app(cluster.root)
        cluster.console(f"upload all app {app}; start all app --name web -- {PY} idle.py")
        pids = {a: wait_until(lambda a=a: [p.pid for p in copies(cluster, "idle.py")
                                           if f"state-{a}" in (p.info["cwd"] or "")],
                              what=f"web on {a}")[0] for a in ("deaf", "stalled")}

        cut_at = time.monotonic()
        deaf_link.drop_downstream()
        stalled_link.stall()
        wait_until(lambda: not fault_db.online(cluster.db, "stalled"), timeout=15,
                   what="stalled agent declared offline")
        # Not before limit + grace, counted from the last heartbeat heard, which may be
        # up to one interval (0.5 s) before the cut.
        assert time.monotonic() - cut_at >= 0.5 * 2 + 1.5 - 0.5 - 0.1
        assert fault_db.online(cluster.db, "deaf")  # it still heartbeats: no verdict
        # Commands meanwhile: the stalled agent is offline (stored for later); the deaf
        # one looks online, so the server sends and waits in vain (in the background).
        offline = cluster.console("stop stalled web", check=False).stdout
        assert "offline" in offline, offline
        deaf_stop = background_console(cluster, "stop deaf web")

        # Each agent notices the silence (its limit from the server's TIMING: 2 missed
        # periods of 5 s ping + 0.5 s heartbeat = 11 s) and reconnects; the new
        # connections pass the proxy normally.
        wait_until(lambda: deaf_link.accepted >= 2 and stalled_link.accepted >= 2,
                   timeout=40, what="both agents reconnected")
        fault_db.wait_online(cluster.db, "deaf", "stalled")
        for agent in ("deaf", "stalled"):
            wait_until(lambda a=agent: fault_db.status(cluster.db, a, "web").get("state")
                       == ProcessState.STOPPED, timeout=30, what=f"stop applied on {agent}")
        deaf_stop.communicate(timeout=60)
        for agent in ("deaf", "stalled"):  # said once, in plain words (before the proxies go)
            log = cluster.agent_log(agent)
            assert log.count("lost the server") == 1, log[-2000:]
            assert f"nothing heard from the server for {AGENT_LIMIT_S:g} s" in log, log[-2000:]
            assert "Traceback" not in log

    # The processes ran (suspended now) throughout: same pids, one copy each.
    for agent, pid in pids.items():
        assert suspended(pid), agent
    assert sorted(p.pid for p in copies(cluster, "idle.py")) == sorted(pids.values())
    offline_events = {a: len(fault_db.events(cluster.db, a, EventKind.AGENT_OFFLINE))
                      for a in pids}
    assert offline_events == {"deaf": 0, "stalled": 1}, offline_events
    view = cluster.processes()
    assert all(view[(a, "web")]["desired"] == "STOPPED" for a in pids), view
