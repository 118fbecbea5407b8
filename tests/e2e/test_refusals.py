"""Issue 14, items 18 and 20: refused clients are told why, and the server says it once.

Failed logins from one address are answered ever more slowly and logged once a
window, while good logins from the same address go straight through.

A revoked agent hears "revoked" (not "authentication failed") and retries
rarely; an admin revoking their own token gets OK; a plain agent knocking on a
TLS server is logged once by the server, not once per retry.
"""
from __future__ import annotations

import re
import subprocess

import trio

from lotc.errors import AuthFailed, LotcError
from lotc.net.address import Address
from lotc.net.auth import client_handshake
from lotc.net.refusals import FREE_LOGIN_FAILURES, login_delay
from lotc.net.transport import connect
from protocol.enums import Role
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


# ------------------------------------------------------------------ item 18: throttling

BAD_LOGINS = 8  # 5 answered at once, then 0.5 s, 1 s, 2 s
HANDSHAKE_TIMEOUT_S = 10.0
PROMPT_S = 0.4  # a login (or a free refusal) on loopback takes milliseconds


async def _login(port: int, role: Role, name: str, token: str) -> tuple[float, BaseException | None]:
    started = trio.current_time()
    framed = await connect(Address("127.0.0.1", port), max_body=1 << 20,
                           send_timeout=HANDSHAKE_TIMEOUT_S)
    try:
        await client_handshake(framed, role=role, name=name, token=token,
                               timeout=HANDSHAKE_TIMEOUT_S)
        outcome: BaseException | None = None
    except LotcError as exc:
        outcome = exc
    finally:
        await framed.aclose()
    return trio.current_time() - started, outcome


def test_failed_logins_are_slowed_and_logged_once_good_logins_are_not(cluster: Cluster) -> None:
    cluster.start_server()
    agent_token = cluster.token("agent", "n1")

    async def scenario() -> tuple[list[float], float, float]:
        refused = []
        for _ in range(BAD_LOGINS):
            took, outcome = await _login(cluster.admin_port, Role.ADMIN, "admin", "wrong")
            assert isinstance(outcome, AuthFailed), outcome
            refused.append(took)
        admin_took, admin = await _login(cluster.admin_port, Role.ADMIN, "admin",
                                         cluster.admin_token)
        agent_took, agent = await _login(cluster.agent_port, Role.AGENT, "n1", agent_token)
        assert admin is None and agent is None, (admin, agent)
        return refused, admin_took, agent_took

    refused, admin_took, agent_took = trio.run(scenario)
    assert max(refused[:FREE_LOGIN_FAILURES]) < PROMPT_S, refused
    for index in range(FREE_LOGIN_FAILURES, BAD_LOGINS):
        assert refused[index] >= login_delay(index + 1) * 0.9, refused
    # The same address, the right tokens: no delay for either port.
    assert admin_took < PROMPT_S and agent_took < PROMPT_S, (admin_took, agent_took)
    lines = [line for line in cluster.server_log().splitlines()
             if "authentication failed" in line]
    assert len(lines) == 1 and "counted, not logged" in lines[0], lines
