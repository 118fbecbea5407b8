"""Issue 14, items 6-9, through the real CLI: what a process runs in, inherits, and how
its desired state follows what happened to it.

A real `lotc server`, a real agent and real managed processes; the checks read the
processes' own /proc entries (cwd, environ), not LOTC's word for them.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from tests.cluster import Cluster, wait_until

PY = sys.executable

# Reads its VERSION file every 20 ms: a tree pulled from under it ends it at once.
READER = ("import time\n"
          "while True:\n"
          "    open('VERSION').read()\n"
          "    time.sleep(0.02)\n")


def _app(root: Path, version: str) -> Path:
    root.mkdir(exist_ok=True)
    (root / "VERSION").write_text(version)
    (root / "main.py").write_text(READER)
    return root


def _one_agent(cluster: Cluster, **kwargs: Any) -> None:
    cluster.start_server()
    cluster.start_agent("n1", **kwargs)
    cluster.wait_online("n1")


def _entry(cluster: Cluster, name: str) -> dict[str, Any]:
    return cluster.processes()[("n1", name)]


def _running_pid(cluster: Cluster, name: str) -> int:
    return int(wait_until(lambda: _entry(cluster, name)["pid"], what=f"{name} running"))


def _cwd(pid: int) -> str:
    return os.readlink(f"/proc/{pid}/cwd")


def test_reupload_never_breaks_a_running_process(cluster: Cluster, tmp_path: Path) -> None:
    _one_agent(cluster)
    app = _app(tmp_path / "app", "v1")
    cluster.console(f"upload n1 app {app}; start n1 app --name old -- {PY} main.py")
    old_pid = _running_pid(cluster, "old")
    old_tree = _cwd(old_pid)

    _app(app, "v2")
    cluster.console(f"upload n1 app {app}; start n1 app --name new -- {PY} main.py")
    new_pid = _running_pid(cluster, "new")

    old = _entry(cluster, "old")
    assert (old["pid"], old["restarts"], old["state"]) == (old_pid, 0, "RUNNING"), old
    assert _cwd(old_pid) == old_tree and not old_tree.endswith("(deleted)")
    assert Path(old_tree, "VERSION").read_text() == "v1", "the old run keeps its version"
    assert Path(_cwd(new_pid), "VERSION").read_text() == "v2", "a new start uses the new one"

    # `ps` says which version each one runs: `bundles` shows the current one
    [current] = cluster.console_json("bundles n1")["bundles"]
    assert _entry(cluster, "new")["bundle_sha256"] == current["sha256"]
    old_sha = _entry(cluster, "old")["bundle_sha256"]
    assert old_sha and old_sha != current["sha256"]
    assert old_sha[:12] in cluster.console("ps n1").stdout

    cluster.kill_agent("n1")  # a restarted agent re-adopts it, and keeps its version
    cluster.start_agent("n1")
    cluster.wait_online("n1")
    wait_until(lambda: _entry(cluster, "old")["bundle_sha256"] == old_sha, what="re-adopted")
    assert _entry(cluster, "old")["pid"] == old_pid and Path(old_tree, "VERSION").exists()

    cluster.console("terminate n1 old")
    # unused now, it is kept for rollback among the 3 newest replaced versions...
    assert old_sha[:12] in cluster.console("bundles n1 --versions").stdout
    for version in ("v3", "v4", "v5"):  # ...until three newer ones have replaced it
        _app(app, version)
        cluster.console(f"upload n1 app {app}")
    wait_until(lambda: not Path(old_tree).exists(), what="old version dropped once unused")
    assert Path(_cwd(new_pid), "VERSION").read_text() == "v2"  # held by its run


def test_agent_secrets_stay_in_the_agent(cluster: Cluster, tmp_path: Path) -> None:
    _one_agent(cluster, env={"LOTC_TOKEN": "n1.the-agents-secret", "LOTC_SERVER": "x:1",
                             "PWD": "/somewhere/else", "JOURNAL_STREAM": "8:1234",
                             "KEEP_ME": "yes"})
    app = _app(tmp_path / "app", "v1")
    cluster.console(f"upload n1 app {app}; start n1 app --env MODE=prod -- {PY} main.py")
    pid = _running_pid(cluster, "app")
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    env = dict(item.split("=", 1) for item in raw.decode().split("\0") if item)
    assert not [k for k in env if k.startswith("LOTC_") and k not in ("LOTC_PROCESS",
                                                                      "LOTC_BUNDLE")], env
    assert "JOURNAL_STREAM" not in env
    assert env["PWD"] == _cwd(pid)
    assert (env["LOTC_PROCESS"], env["MODE"], env["KEEP_ME"]) == ("app", "prod", "yes")


def test_desired_state_follows_what_happened(cluster: Cluster, tmp_path: Path) -> None:
    _one_agent(cluster)
    app = _app(tmp_path / "app", "v1")
    (app / "done.py").write_text("print('done')\n")
    cluster.console(f"upload n1 app {app}; "
                    f"start n1 app --name once --restart never -- {PY} done.py")
    failed = cluster.console("start n1 app --name ghost -- ./nosuchbin", check=False)
    assert failed.returncode != 0 and "nosuchbin" in failed.stdout + failed.stderr

    wait_until(lambda: _entry(cluster, "once")["state"] == "EXITED", what="once ended")
    once, ghost = _entry(cluster, "once"), _entry(cluster, "ghost")
    assert (once["desired"], once["exit_code"]) == ("EXITED", 0), once
    assert (ghost["state"], ghost["desired"]) == ("FAILED", "EXITED"), ghost

    out = cluster.console("terminate n1 once").stdout
    assert "already ended" in out, out

    cluster.kill_agent("n1")  # a restarted agent still lists the one that never started
    cluster.start_agent("n1")
    cluster.wait_online("n1")
    ghost = wait_until(lambda: _entry(cluster, "ghost")["status"] and _entry(cluster, "ghost"),
                       what="ghost listed after the agent restart")
    assert ghost["state"] == "FAILED" and "nosuchbin" in ghost["status"], ghost

    cluster.console("remove n1 app")  # every process of the bundle has ended
    assert cluster.processes() == {}


def test_terminate_in_backoff_reports_the_terminate(cluster: Cluster, tmp_path: Path) -> None:
    _one_agent(cluster)
    app = _app(tmp_path / "app", "v1")
    (app / "crash.py").write_text("raise SystemExit(3)\n")
    cluster.console(f"upload n1 app {app}; start n1 app --name crashy -- {PY} crash.py")
    # backoff doubles from 0.5 s: after four restarts the wait is 4 s or more, room enough
    # for the console to start on a loaded machine before the process runs again
    wait_until(lambda: (e := _entry(cluster, "crashy"))["state"] == "BACKOFF"
               and e["restarts"] >= 4, timeout=30, what="a long backoff")
    out = cluster.console("terminate n1 crashy").stdout
    assert "waiting to restart" in out and "exit code 3" not in out, out
    entry = _entry(cluster, "crashy")
    assert (entry["state"], entry["desired"]) == ("EXITED", "EXITED"), entry


def test_a_file_bundle_keeps_its_file_name(cluster: Cluster, tmp_path: Path) -> None:
    """The start help's own example: `upload node-1 tool ./tool.py`, `python3 tool.py`."""
    _one_agent(cluster)
    tool = tmp_path / "tool.py"
    tool.write_text("import os\nprint('tool ran in', os.path.basename(os.getcwd()))\n")
    cluster.console(f"upload n1 tool {tool}; "
                    f"start n1 tool --restart never -- {PY} tool.py; "
                    f"start n1 tool --name as-before --restart never -- {PY} tool")
    for name in ("tool", "as-before"):  # by its own name; by the bundle's, as it always ran
        wait_until(lambda n=name: _entry(cluster, n)["state"] == "EXITED", what=f"{name} ran")
        logs = cluster.console(f"logs n1 {name}").stdout
        assert _entry(cluster, name)["exit_code"] == 0, logs
        assert "tool ran in tree" in logs
