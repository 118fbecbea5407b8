"""Containment through the real `lotc console -c` against a real agent running as root on
this machine's cgroups (issue 16, "Done when"): the daemonizing program and the memory hog.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import psutil
import pytest

from tests.agent_helpers import PY, alive, suspended
from tests.cluster import Cluster, wait_until
from tests.e2e.test_cgroups import DAEMON

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="real cgroups need root")
HOG = "data = b'x' * (200 * 2**20)\nimport time\ntime.sleep(60)\n"


def _bundle(tmp_path: Path) -> Path:
    app = tmp_path / "app"
    app.mkdir()
    (app / "daemon.py").write_text(DAEMON)
    (app / "hog.py").write_text(HOG)
    return app


def _daemon_pid(cluster: Cluster) -> int:
    # the agent runs a copy of the bundle: the daemon writes its pid next to itself
    def found() -> int:
        for path in (cluster.root / "state-n1").rglob("daemon.pid"):
            text = path.read_text()
            if text:
                return int(text.split()[0])
        return 0
    return int(wait_until(found, timeout=20, what="the daemon wrote its pid"))


def _forget_daemon(cluster: Cluster) -> None:
    for path in (cluster.root / "state-n1").rglob("daemon.pid"):
        path.unlink()


def _marked(process: str) -> list[int]:
    """Live processes carrying the process's name marker (LOTC_PROCESS)."""
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get("LOTC_PROCESS") == process and alive(proc.pid):
                found.append(proc.pid)
        except psutil.Error:
            continue
    return found


def _nothing_left(process: str, daemon: int) -> None:
    wait_until(lambda: not alive(daemon) and not _marked(process), timeout=20,
               what=f"nothing of {process} left")


def test_daemonizing_program_and_memory_hog_through_the_console(cluster: Cluster,
                                                                tmp_path: Path) -> None:
    cluster.start_server()
    cluster.start_agent("n1")
    cluster.wait_online("n1")
    detail = cluster.console("agent n1").stdout
    assert re.search(r"cgroups:\s+hybrid: kill by cgroup\.kill; stop by cgroup\.freeze; "
                     r"limits: memory, cpus, max-pids", detail), detail

    app = _bundle(tmp_path)
    start = f"start n1 app --name cg-d --cpus 0.5 --max-pids 16 -- {PY} daemon.py"
    cluster.console(f"upload n1 app {app}; {start}")
    daemon = _daemon_pid(cluster)
    leader = int(cluster.processes()[("n1", "cg-d")]["pid"])
    assert os.getsid(daemon) != leader  # escaped its session: only the cgroup holds it
    shown = cluster.console("ps n1 cg-d").stdout
    assert "cpus:" in shown and "0.5" in shown and "max-pids:" in shown, shown

    cluster.console("stop n1 cg-d")
    wait_until(lambda: suspended(daemon) and suspended(leader), what="the tree frozen")
    assert "cgroup.freeze: frozen, 2 processes" in cluster.console("events -n 20").stdout
    cluster.console("resume n1 cg-d")
    wait_until(lambda: not suspended(daemon), what="the tree thawed")

    cluster.console("terminate n1 cg-d")  # the daemon ignores SIGTERM: the cgroup kill ends it
    _nothing_left("cg-d", daemon)

    _forget_daemon(cluster)
    cluster.console(start.replace("--name cg-d ", "--name cg-k "))
    daemon = _daemon_pid(cluster)
    cluster.console("kill n1 cg-k")
    _nothing_left("cg-k", daemon)

    _forget_daemon(cluster)
    cluster.console(start.replace("--name cg-d ", "--name cg-r "))
    daemon = _daemon_pid(cluster)
    cluster.console("restart n1 cg-r")
    wait_until(lambda: not alive(daemon), timeout=20, what="the old run's daemon ended")
    # the file is the old daemon's until the new one writes it (every 10 ms)
    wait_until(lambda: _daemon_pid(cluster) != daemon, what="the new run's daemon")
    wait_until(lambda: len(_marked("cg-r")) == 2, what="the new run's pair, nothing more")

    cluster.console(f"start n1 app --name cg-hog --memory 50M --restart never -- {PY} hog.py")
    wait_until(lambda: cluster.processes()[("n1", "cg-hog")]["state"] == "EXITED", timeout=30,
               what="the hog ended")
    events = cluster.console("events -n 50").stdout
    assert "killed by the kernel: out of memory (limit 50 MiB)" in events, events
    shown = cluster.console("ps n1 cg-hog").stdout
    assert re.search(r"oom-kills:\s+1\n", shown), shown
    assert str(50 * 2**20) in shown, shown  # the limit it ran under

