"""`start --log-size --log-keep` through the real CLI (issue 14, item 10's remainder).

The options travel in PROC_START_OPTIONS, are kept in the server's desired
state (SQLite) and re-sent by reconcile: checked on the node's log files after
an agent restart, a server restart and a reconcile onto an empty state dir.
"""
from __future__ import annotations

import shutil
import signal
import sys
from pathlib import Path

import psutil

from tests.cluster import Cluster, wait_until

PY = sys.executable
LOG_SIZE = 64 * 1024
LINE = "x" * 99  # + newline: 100 bytes, before the agent's timestamp
LINES = 3000  # 300 KB: four or more rotations at 64K


def _bundle(tmp_path: Path) -> Path:
    app = tmp_path / "noisy"
    app.mkdir()
    (app / "main.py").write_text(
        "import sys, time\n"
        f"for i in range({LINES}):\n"
        f"    print('{LINE}')\n"
        "print('done', flush=True)\n"
        "time.sleep(3600)\n"
    )
    return app


def _logs(cluster: Cluster) -> Path:
    return cluster.root / "state-n1" / "processes" / "logs" / "noisy"


def _check_rotated(cluster: Cluster) -> None:
    logs = _logs(cluster)
    wait_until(lambda: "done" in (logs / "stdout.log").read_text() if (logs / "stdout.log")
               .exists() else False, timeout=20, what="all lines written")
    files = sorted(p.name for p in logs.glob("stdout.log*"))
    assert files == ["stdout.log", "stdout.log.1", "stdout.log.2"], files  # exactly 2 copies
    longest_line = max(len(line) for p in logs.glob("stdout.log*")
                       for line in p.read_bytes().splitlines(keepends=True))
    for path in logs.glob("stdout.log*"):
        assert path.stat().st_size <= LOG_SIZE + longest_line, (path, path.stat().st_size)
    assert (logs / "stdout.log.1").stat().st_size > LOG_SIZE // 2  # rotated by our size


def _pid(cluster: Cluster) -> int:
    def running() -> int:
        entry = cluster.processes().get(("n1", "noisy"), {})
        return int(entry.get("pid") or 0) if entry.get("state") == "RUNNING" else 0
    return int(wait_until(running, what="n1/noisy running"))


def test_log_options_apply_and_survive_restarts(cluster: Cluster, tmp_path: Path) -> None:
    cluster.start_server()
    cluster.start_agent("n1")
    cluster.wait_online("n1")
    out = cluster.console(f"upload n1 noisy {_bundle(tmp_path)}; "
                          f"start n1 noisy --log-size 64K --log-keep 2 -- {PY} main.py").stdout
    assert "too old" not in out, out
    _check_rotated(cluster)
    pid = _pid(cluster)

    cluster.kill_agent("n1")  # the agent's own record keeps the options
    cluster.start_agent("n1")
    cluster.wait_online("n1")
    assert _pid(cluster) == pid
    cluster.stop_server(signal.SIGKILL)
    cluster.start_server()
    cluster.wait_online("n1", timeout=40)

    # A node that lost its state: reconcile must start it again with the same options.
    cluster.kill_agent("n1")
    psutil.Process(pid).kill()
    shutil.rmtree(cluster.root / "state-n1")
    cluster.start_agent("n1")
    cluster.wait_online("n1")
    assert _pid(cluster) != pid
    _check_rotated(cluster)


def test_bad_option_values_exit_2_before_sending(cluster: Cluster) -> None:
    cluster.start_server()
    for words, said in (("--log-size 1x", "--log-size: '1x' is not a size"),
                        ("--log-size 1K", "--log-size: '1K' is out of range: from 4K to 1T"),
                        ("--log-keep -1", "--log-keep: '-1' is not a whole number"),
                        ("--log-keep 5000", "--log-keep: 5000 is too large: at most 1000")):
        result = cluster.console(f"start n1 app {words} -- x", check=False)
        assert result.returncode == 2, (words, result)
        assert said in result.stdout + result.stderr, (words, result)
