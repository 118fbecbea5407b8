"""`exec SELECTOR -- CMD` through the real `lotc console -c` against real agents running as
root on this machine's cgroups (issue 20 item 1): each agent's status and output, the
output cap, the timeout killing a command's whole tree (a daemonized child too), --user,
an offline agent reported, the exit status, and a server started with --no-exec.
"""
from __future__ import annotations

import json
import os
import pwd
import subprocess
import uuid
from collections.abc import Iterator

import psutil
import pytest

from tests.agent_helpers import PY
from tests.cluster import Cluster, wait_until

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="cgroups and --user need root")

# Forks a child that leaves its session and ignores SIGTERM, then both sleep: only the
# command's cgroup can end them at the timeout.
ESCAPER = ("import os, signal, sys, time\n"
           "if os.fork() == 0:\n"
           "    os.setsid(); signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
           "    print('child', os.getpid(), flush=True); time.sleep(600)\n"
           "time.sleep(600)\n")


@pytest.fixture
def user() -> Iterator[str]:
    name = f"lotcx{uuid.uuid4().hex[:8]}"
    subprocess.run(["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
                   check=True, capture_output=True)
    try:
        yield name
    finally:
        subprocess.run(["userdel", name], check=False, capture_output=True)


def _marked(text: str) -> list[int]:
    return [p.pid for p in psutil.process_iter(["cmdline"])
            if text in " ".join(p.info["cmdline"] or [])]


def test_exec_on_many_agents(cluster: Cluster, user: str) -> None:
    cluster.start_server()
    for name in ("n1", "n2", "n3"):
        cluster.start_agent(name)
    cluster.wait_online("n1", "n2", "n3")
    cluster.kill_agent("n3")
    wait_until(lambda: cluster.agents_view()["n3"]["online"] is False, timeout=20,
               what="n3 offline")

    result = cluster.console("exec n* -- sh -c 'echo hello from $(hostname); echo oops >&2'",
                             check=False)
    assert result.returncode == 1, result.stdout  # n3 did not run it
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["AGENT", "STATUS", "DURATION", "OUTPUT"]
    assert lines[1].startswith("n1") and "exit 0" in lines[1] and "hello from" in lines[1]
    assert lines[3].startswith("n3") and "offline" in lines[3], result.stdout

    document = json.loads(cluster.console("exec n1,n2 -- sh -c 'echo out; echo err >&2; "
                                          "exit 3'", json_output=True, check=False).stdout)
    assert [(r["agent"], r["status"], r["exit_code"]) for r in document["exec"]] == \
        [("n1", "exited", 3), ("n2", "exited", 3)]
    assert document["exec"][0]["stdout"] == "out\n" and document["exec"][0]["stderr"] == "err\n"
    assert cluster.console("exec n1 -- true").returncode == 0

    big = cluster.console_json(f"exec n1 -- {PY} -c \"print('x' * 2000000)\"")["exec"][0]
    assert big["truncated"] and len(big["stdout"]) == 512 * 1024
    assert "output cut on n1: 512 KiB" in cluster.console(
        f"exec n1 -- {PY} -c \"print('x' * 2000000)\"").stdout

    marker = f"escaper-{uuid.uuid4().hex[:6]}"
    out = cluster.console(f"exec n1 --timeout 1s -- {PY} -c \"{ESCAPER}\" {marker}",
                          check=False)
    assert out.returncode == 1 and "timed out" in out.stdout, out.stdout
    wait_until(lambda: not _marked(marker), timeout=10, what="nothing of it left")

    entry = pwd.getpwnam(user)
    who = cluster.console_json(f"exec n1 --user {user} -- id -u")["exec"][0]
    assert who["stdout"].strip() == str(entry.pw_uid)
    gone = json.loads(cluster.console("exec n1 -- no-such-command", json_output=True,
                                      check=False).stdout)["exec"][0]
    assert gone["status"] == "not started" and "No such file" in gone["message"]


def test_a_server_with_no_exec_refuses(cluster: Cluster) -> None:
    cluster.start_server("--no-exec")
    cluster.start_agent("n1")
    cluster.wait_online("n1")
    result = cluster.console("exec n1 -- true", check=False)
    assert result.returncode != 0
    assert "exec is turned off on this server" in result.stdout + result.stderr
    assert "online" in cluster.console("agents").stdout  # nothing else changed
