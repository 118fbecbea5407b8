"""`lotc deploy` against a real OpenSSH server on loopback, as the current user.

No systemd runs in the test machine, so this covers the nohup path: deploy
(token created in the server's DB), the agent comes online and runs a
process, a second deploy upgrades in place without touching that process,
and --uninstall terminates it and removes everything.
"""
from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from lotc.build_agent import build
from tests.cluster import Cluster, wait_until
from tests.sshd_helpers import Sshd, start_sshd, wait_gone

SYSTEM_PYTHON = "/usr/bin/python3"
DEPLOY_TIMEOUT_S = 60.0
ONLINE_TIMEOUT_S = "20"

pytestmark = pytest.mark.skipif(not os.path.exists(SYSTEM_PYTHON),
                                reason="no system /usr/bin/python3 to run the agent with")


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[Sshd]:
    yield from start_sshd(tmp_path / "sshd")


@pytest.fixture
def agent_file(tmp_path: Path) -> Path:
    return build(tmp_path / "lotc-agent.pyz").path


def deploy(cluster: Cluster, sshd: Sshd, node_dir: Path, agent_file: Path,
           *extra: str) -> str:
    result = cluster.lotc(
        "deploy", sshd.target, *sshd.client_options(), "--dir", str(node_dir),
        "--python", SYSTEM_PYTHON, "--agent-file", str(agent_file),
        "--admin-server", f"127.0.0.1:{cluster.admin_port}", "--timeout", ONLINE_TIMEOUT_S,
        *extra, env={"LOTC_TOKEN": cluster.admin_token}, timeout=DEPLOY_TIMEOUT_S)
    print(f"--- deploy {extra[-1:]} ---\n{result.stdout}")
    return result.stdout


def agent_pid(node_dir: Path) -> int:
    return int((node_dir / "agent.pid").read_text())


@pytest.fixture
def sleeper(tmp_path: Path) -> Path:
    """A single-file bundle (the node's python 3.11.2 lacks tarfile's extraction filters,
    which directory bundles use: see the issue notes)."""
    path = tmp_path / "sleeper.py"
    path.write_text("import time\nwhile True:\n    time.sleep(1)\n")
    return path


def test_deploy_upgrade_uninstall(cluster: Cluster, sshd: Sshd, agent_file: Path,
                                  sleeper: Path, tmp_path: Path) -> None:
    cluster.start_server()
    node_dir = tmp_path / "node" / "lotc-agent"
    target = ["--server", f"127.0.0.1:{cluster.agent_port}", "--name", "node-1"]

    out = deploy(cluster, sshd, node_dir, agent_file, *target, "--db", str(cluster.db))
    assert "created a token" in out and "starting with nohup" in out, out
    assert "node-1 is online" in out, out
    token_path = node_dir / "token"
    assert stat.S_IMODE(token_path.stat().st_mode) == 0o600
    token = token_path.read_text().strip()
    assert not [p.pid for p in psutil.process_iter(["cmdline"])
                if token in " ".join(p.info["cmdline"] or ())], "the token shows in ps"
    assert cluster.agents_view()["node-1"]["online"]

    cluster.console(f"upload node-1 app {sleeper}; "
                    f"start node-1 app --restart never -- {SYSTEM_PYTHON} app")
    wait_until(lambda: cluster.processes().get(("node-1", "app"), {}).get("pid"),
               what="app running on node-1")
    app_pid = cluster.processes()[("node-1", "app")]["pid"]
    first_agent = agent_pid(node_dir)

    # Upgrade in place: the node's token is kept, the process runs on, unchanged.
    out = deploy(cluster, sshd, node_dir, agent_file, *target, "--db", str(cluster.db))
    assert "keeping the token" in out and "upgrade of" in out, out
    assert "node-1 is online" in out, out
    assert agent_pid(node_dir) != first_agent
    assert token_path.read_text().strip() == token
    assert psutil.pid_exists(app_pid)
    wait_until(lambda: cluster.processes()[("node-1", "app")]["pid"] == app_pid,
               what="the upgraded agent re-adopted app")

    second_agent = agent_pid(node_dir)
    out = deploy(cluster, sshd, node_dir, agent_file, "--uninstall")
    assert "terminated 1 process" in out, out
    wait_gone(second_agent)
    wait_gone(app_pid)
    assert not node_dir.exists()
