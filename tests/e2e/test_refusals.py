"""Issue 14, item 20: refused clients are told why, and the server says it once.

A revoked agent hears "revoked" (not "authentication failed") and retries
rarely; an admin revoking their own token gets OK; a plain agent knocking on a
TLS server is logged once by the server, not once per retry.
"""
from __future__ import annotations

import re
import subprocess

from tests.cluster import Cluster, wait_until
from tests.e2e.test_tls_and_grace import make_certs

REVOKED_RETRY_MIN_S = 300  # the agent's revoked_retry_s is 600, jittered down to half


def _revocation_wait(log: str) -> float | None:
    found = re.search(r"revoked this agent's token.*next attempt in (\d+) s", log)
    return None if found is None else float(found.group(1))


def test_a_revoked_agent_is_told_so_and_backs_off_long(cluster: Cluster) -> None:
    cluster.start_server()
    cluster.start_agent("n1")
    cluster.wait_online("n1")
    # n2's token is revoked before it ever connects: its first login is refused.
    cluster.start_agent("n2", token=cluster.token("agent", "n2"))
    cluster.lotc("token", "revoke", "n2", "--db", str(cluster.db))
    # n1 is cut off while connected (the server notices `lotc token revoke` on its file).
    cluster.lotc("token", "revoke", "n1", "--db", str(cluster.db))
    for name in ("n1", "n2"):
        wait = wait_until(lambda name=name: _revocation_wait(cluster.agent_log(name)), 20,
                          what=f"{name} told it was revoked")
        assert wait >= REVOKED_RETRY_MIN_S, cluster.agent_log(name)
        assert "authentication failed" not in cluster.agent_log(name)
        assert cluster.agents[name].poll() is None  # it keeps running (its processes too)
    # n2's refusal was a login: the server tells the revocation apart from a bad token.
    assert re.search(r"closing .*: the token of agent 'n2' was revoked", cluster.server_log())


def test_an_admin_revoking_their_own_token_gets_success(cluster: Cluster) -> None:
    cluster.start_server()
    bob = cluster.token("admin", "bob")

    def as_bob(commands: str) -> subprocess.CompletedProcess[str]:
        return cluster.lotc("console", "--server", f"127.0.0.1:{cluster.admin_port}",
                            "--name", "bob", "-c", commands, check=False,
                            env={"LOTC_TOKEN": bob})

    result = as_bob("token revoke bob")
    assert result.returncode == 0, result
    assert "revoked bob" in result.stdout, result
    again = as_bob("agents")
    assert again.returncode != 0
    assert "revoked" in again.stderr and "authentication failed" not in again.stderr, again


def test_a_plain_agent_against_a_tls_server_is_logged_once(cluster: Cluster) -> None:
    chain, key, _ca = make_certs(cluster.root)
    cluster.start_server("--tls-cert", str(chain), "--tls-key", str(key))
    cluster.start_agent("plain")  # no --tls-ca: it speaks plain LOTC to a TLS port
    wait_until(lambda: cluster.agent_log("plain").count("reconnecting in") >= 4, 30,
               what="the plain agent retried several times")
    log = cluster.server_log()
    lines = [line for line in log.splitlines() if "not TLS" in line]
    assert len(lines) == 1, log
    assert "WARNING" in lines[0] and "127.0.0.1" in lines[0], lines
