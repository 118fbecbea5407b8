"""Issue 14 item 1: the token names its owner, so the token alone logs in (DESIGN 7).

Real `lotc token`, `lotc server`, `lotc agent` and `lotc console` subprocesses on
loopback; the cluster fixture cleans up even when a test fails.
"""
from __future__ import annotations

import hashlib
import secrets
import sqlite3
import stat
import subprocess

from tests.cluster import LOTC, START_TIMEOUT_S, Cluster


def console_as(cluster: Cluster, token: str, *extra: str) -> subprocess.CompletedProcess[str]:
    """`lotc console` with only $LOTC_TOKEN: no --name, no $LOTC_ADMIN."""
    return cluster.lotc("console", "--server", f"127.0.0.1:{cluster.admin_port}", *extra,
                        "-c", "agents", check=False,
                        env={"LOTC_TOKEN": token, "LOTC_ADMIN": ""})


def bare_token(cluster: Cluster, role: str, name: str) -> str:
    """A token as an older lotc made it (a bare secret), enrolled for `name`."""
    cluster.token(role, name)
    token = secrets.token_urlsafe(32)
    with sqlite3.connect(cluster.db) as db:
        db.execute("UPDATE tokens SET digest = ? WHERE name = ?",
                   (hashlib.sha256(token.encode()).digest(), name))
    return token


def test_token_alone_logs_in_console_and_agent(cluster: Cluster) -> None:
    alice = cluster.token("admin", "alice")
    assert alice.startswith("alice.")
    cluster.start_server()
    result = console_as(cluster, alice)
    assert result.returncode == 0, result.stderr
    assert "authentication failed" not in result.stderr

    # the agent, started with its token file alone (no --name), logs in as node-1
    token_file = cluster.root / "node-1.token"
    cluster.lotc("token", "create", "--agent", "node-1", "--db", str(cluster.db),
                 "-o", str(token_file))
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    log = (cluster.root / "agent-node-1.log").open("ab")
    cluster.agents["node-1"] = subprocess.Popen(
        [*LOTC, "agent", "--server", f"127.0.0.1:{cluster.agent_port}", "--token-file",
         str(token_file), "--state-dir", str(cluster.root / "state-node-1")],
        stdout=log, stderr=log, stdin=subprocess.DEVNULL)
    cluster.admin_token = alice
    cluster.wait_online("node-1")


def test_a_name_that_disagrees_with_the_token_is_a_plain_error(cluster: Cluster) -> None:
    alice = cluster.token("admin", "alice")
    cluster.start_server()
    result = console_as(cluster, alice, "--name", "bob")
    assert result.returncode == 2
    assert "'bob'" in result.stderr and "'alice'" in result.stderr
    assert console_as(cluster, alice, "--name", "alice").returncode == 0

    agent_token = cluster.root / "node-1.token"
    agent_token.write_text(cluster.token("agent", "node-1"))
    agent = cluster.lotc("agent", "--server", f"127.0.0.1:{cluster.agent_port}", "--name",
                         "node-2", "--token-file", str(agent_token), check=False,
                         timeout=START_TIMEOUT_S)
    assert agent.returncode == 1
    assert "'node-2'" in agent.stderr and "'node-1'" in agent.stderr


def test_old_tokens_keep_working_with_name(cluster: Cluster) -> None:
    carol = bare_token(cluster, "admin", "carol")
    cluster.start_server()
    assert console_as(cluster, carol, "--name", "carol").returncode == 0

    # without --name the console falls back to 'admin': the refusal says what to check
    refused = console_as(cluster, carol)
    assert refused.returncode == 2
    assert "authentication failed for admin 'admin'" in refused.stderr
    assert "check that the token is admin's" in refused.stderr and "--name" in refused.stderr

    old_agent = cluster.root / "old.token"
    old_agent.write_text(bare_token(cluster, "agent", "old-1"))
    nameless = cluster.lotc("agent", "--server", f"127.0.0.1:{cluster.agent_port}",
                            "--token-file", str(old_agent), check=False, timeout=START_TIMEOUT_S)
    assert nameless.returncode == 1 and "give --name" in nameless.stderr
    cluster.start_agent("old-1", token=old_agent.read_text())  # with --name: it logs in
    cluster.admin_token = cluster.token("admin", "ops")
    cluster.wait_online("old-1")
