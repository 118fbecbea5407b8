"""`start --user --nofile --env-file --instances`, `ps AGENT P`, `scale` (issue 16, items 4, 7,
8, 9) through the real `lotc console -c` against a real agent running as root.

The program is a shell script (/bin/sh is reachable by any user, the test's Python
may live under a private home): it prints who it runs as and what it got, then sleeps.
"""
from __future__ import annotations

import os
import pwd
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.cluster import Cluster, wait_until

SECRET = "s3cret-value-42"
SCRIPT = (
    'echo "uid=$(id -u) gid=$(id -g) groups=$(id -G) home=$HOME user=$USER logname=$LOGNAME"\n'
    'echo "nofile=$(ulimit -n) from_file=$FROM_FILE quoted=$QUOTED both=$BOTH"\n'
    'echo "instance=${LOTC_INSTANCE:-none}"\n'
    "exec sleep 3600\n"
)


@pytest.fixture
def user() -> Iterator[str]:
    name = f"lotct{uuid.uuid4().hex[:8]}"
    subprocess.run(["useradd", "--no-create-home", "--home-dir", f"/nonexistent/{name}",
                    "--shell", "/usr/sbin/nologin", name], check=True, capture_output=True)
    try:
        yield name
    finally:
        subprocess.run(["userdel", name], check=False, capture_output=True)


def _bundle(tmp_path: Path) -> Path:
    app = tmp_path / "app"
    app.mkdir()
    (app / "main.sh").write_text(SCRIPT)
    (app / "app.env").write_text(
        "# settings\n\nFROM_FILE=from-the-file\nexport QUOTED='two words'\nBOTH=file\n")
    (app / "bad.env").write_text("GOOD=1\nthis line is wrong\n")
    for path in (app, app / "main.sh", app / "app.env", app / "bad.env"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    return app


def _output(cluster: Cluster, process: str) -> str:
    log = cluster.root / "state-n1" / "processes" / "logs" / process / "stdout.log"
    wait_until(lambda: log.exists() and "instance=" in log.read_text(), timeout=20,
               what=f"{process} printed its identity")
    return log.read_text()


def _running_pid(cluster: Cluster, process: str) -> int:
    def running() -> int:
        entry = cluster.processes().get(("n1", process), {})
        return int(entry.get("pid") or 0) if entry.get("state") == "RUNNING" else 0
    return int(wait_until(running, timeout=20, what=f"n1/{process} running"))


def _open_path_to(root: Path) -> None:
    """pytest's temporary directories are 0700: let other users pass (search only)."""
    for parent in (root, *root.parents):
        if parent != Path("/"):
            parent.chmod(parent.stat().st_mode | 0o001)


def test_user_nofile_env_file_and_detail(cluster: Cluster, tmp_path: Path, user: str) -> None:
    cluster.start_server()
    cluster.start_agent("n1")
    cluster.wait_online("n1")
    app = _bundle(tmp_path)
    start = (f"start n1 app --user {user} --nofile 256 --env-file app.env "
             f"--env BOTH=flag --env TOKEN={SECRET} -- sh main.sh")
    out = cluster.console(f"upload n1 app {app}; {start}", check=False).stdout
    assert "cannot reach the bundle" in out and "not searchable" in out, out  # refused plainly

    _open_path_to(cluster.root)
    cluster.console(start)
    pid = _running_pid(cluster, "app")
    entry = pwd.getpwnam(user)
    assert psutil.Process(pid).uids().real == entry.pw_uid
    assert psutil.Process(pid).gids().real == entry.pw_gid
    text = _output(cluster, "app")
    assert f"uid={entry.pw_uid} gid={entry.pw_gid} groups={entry.pw_gid} " in text, text
    assert f"home={entry.pw_dir} user={user} logname={user}" in text, text
    assert "nofile=256 from_file=from-the-file quoted=two words both=flag" in text, text
    log_dir = cluster.root / "state-n1" / "processes" / "logs" / "app"
    assert (log_dir / "stdout.log").stat().st_uid == os.geteuid()  # logs stay the agent's

    # Environment values stay out of listings, events and the agent's log.
    detail = cluster.console("ps n1 app").stdout
    for line in ("state:", "pid:", "version:", "restarts:", "user:", "nofile:",
                 "env-file:", "env TOKEN:"):
        assert line in detail, (line, detail)
    assert user in detail and "256" in detail and "app.env" in detail
    everything = (detail + cluster.console("ps; events").stdout
                  + cluster.console("ps n1 app", json_output=True).stdout + cluster.agent_log("n1"))
    assert SECRET not in everything and "from-the-file" not in everything
    assert SECRET in cluster.console("ps n1 app --show-env").stdout

    # Plain errors: a bad env-file line names file:line (not its text), a path leaving the
    # bundle is refused before sending, an unknown user or group is named.
    cluster.console("terminate n1 app")
    out = "".join(cluster.console(f"start n1 app --name {words} -- sh main.sh",
                                  check=False).stdout
                  for words in ("bad --env-file bad.env", f"nouser --user nobody-{user}",
                                f"nogroup --user {user}:nogroup-{user}"))
    assert "bad.env:2: not a KEY=VALUE line" in out and "wrong" not in out, out
    assert f"no user 'nobody-{user}' on this node" in out, out
    assert f"no group 'nogroup-{user}' on this node" in out, out
    result = cluster.console("start n1 app --env-file ../../etc/passwd -- sh main.sh",
                             check=False)
    assert result.returncode == 2 and "leaves the bundle" in result.stdout + result.stderr


def _instances(cluster: Cluster) -> list[str]:
    return sorted(name for agent, name in cluster.processes() if agent == "n1")


def test_instances_and_scale_survive_restarts(cluster: Cluster, tmp_path: Path) -> None:
    cluster.start_server()
    cluster.start_agent("n1")
    cluster.wait_online("n1")
    app = _bundle(tmp_path)
    cluster.console(f"upload n1 app {app}; start n1 app --name web --instances 3 -- sh main.sh")
    assert _instances(cluster) == ["web-0", "web-1", "web-2"]
    for index in range(3):
        _running_pid(cluster, f"web-{index}")
        assert f"instance={index}" in _output(cluster, f"web-{index}")
    assert "instances:" in cluster.console("ps n1 web-1").stdout

    out = cluster.console("scale n1 web 1").stdout
    assert "removed web-2, web-1" in out, out  # the highest first
    wait_until(lambda: _instances(cluster) == ["web-0"], timeout=20, what="shrunk to 1")
    kept = _running_pid(cluster, "web-0")
    cluster.console("scale n1 web 2")
    _running_pid(cluster, "web-1")
    assert _running_pid(cluster, "web-0") == kept  # a kept instance is not restarted

    cluster.kill_agent("n1")
    cluster.stop_server()
    cluster.start_server()
    cluster.start_agent("n1")
    cluster.wait_online("n1")
    assert _instances(cluster) == ["web-0", "web-1"]
    assert _running_pid(cluster, "web-0") == kept
    out = cluster.console("scale n1 nothing 2", check=False).stdout
    assert "no instances of 'nothing' on n1" in out, out
