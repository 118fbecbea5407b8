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
from lotc.net.framed import BODY_GRACE_S
from lotc.net.refusals import FREE_LOGIN_FAILURES, login_delay
from lotc.net.transport import connect
from protocol.codec import HEADER_SIZE, encode
from protocol.enums import Role
from protocol.messages import Heartbeat
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
    n2_token = cluster.token("agent", "n2")
    cluster.lotc("token", "revoke", "n2", "--db", str(cluster.db))
    cluster.start_agent("n2", token=n2_token)
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


# ------------------------------------------------------------------ item 18: trickled frames

TRICKLED_BODY = 4 * 1024 * 1024  # announced in the header; 1 byte a second follows
CUT_OFF_WITHIN_S = BODY_GRACE_S + 8  # the deadline plus slack for a busy machine


async def _trickle(port: int, role: Role, name: str, token: str) -> tuple[float, str]:
    """Log in, begin a 4 MiB frame, send 1 B/s; how long until the server cuts us off."""
    framed = await connect(Address("127.0.0.1", port), max_body=1 << 20,
                           send_timeout=HANDSHAKE_TIMEOUT_S)
    try:
        await client_handshake(framed, role=role, name=name, token=token,
                               timeout=HANDSHAKE_TIMEOUT_S)
        header = encode(Heartbeat(seq=1, time_us=0, running=0))[:HEADER_SIZE - 4]
        await framed.stream.send_all(header + TRICKLED_BODY.to_bytes(4, "big"))
        started = trio.current_time()
        with trio.move_on_after(CUT_OFF_WITHIN_S * 2):
            while True:
                try:
                    await framed.stream.send_all(b"x")
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    break
                with trio.move_on_after(1.0):  # the trickle's pace; EOF ends it sooner
                    data = await framed.stream.receive_some(65536)
                    if not data:
                        break
                    if b"trickles" in data:
                        return trio.current_time() - started, data.decode(errors="replace")
        return trio.current_time() - started, ""
    finally:
        await framed.aclose()


def test_a_logged_in_client_trickling_a_frame_is_cut_off(cluster: Cluster) -> None:
    cluster.start_server()
    agent_token = cluster.token("agent", "n1")
    results: dict[str, tuple[float, str]] = {}

    async def scenario() -> None:
        async def one(label: str, port: int, role: Role, name: str, token: str) -> None:
            results[label] = await _trickle(port, role, name, token)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(one, "console", cluster.admin_port, Role.ADMIN, "admin",
                               cluster.admin_token)
            nursery.start_soon(one, "agent", cluster.agent_port, Role.AGENT, "n1", agent_token)

    trio.run(scenario)
    took, error = results["console"]
    assert took < CUT_OFF_WITHIN_S and "trickles" in error, results
    # An agent's connection is read by the hub: its silence limit (3 s) cuts it first.
    assert results["agent"][0] < CUT_OFF_WITHIN_S, results
    assert cluster.server.poll() is None
    assert "trickles the rest" in cluster.server_log()
