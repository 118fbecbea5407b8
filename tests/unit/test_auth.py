"""Challenge-response authentication over memory streams: the real handshake on both ends.

The server side is wrapped the way lotc.net.transport.serve wraps a
connection handler (an ERROR frame for a LotcError, then close), so the
client sees what a real client would.
"""
from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import pytest
import trio
import trio.testing

from lotc.errors import AuthFailed, LotcError, NotAllowed, RequestTimeout
from lotc.net.address import Address
from lotc.net.auth import (
    auth_failure_message,
    client_handshake,
    compute_mac,
    server_handshake,
    token_key,
)
from lotc.net.framed import FramedStream, PeerClosed
from lotc.net.transport import bound_address, connect, open_listeners, serve
from protocol.codec import FrameDecoder, encode
from protocol.enums import Role
from protocol.errors import ErrorCode, ProtocolError
from protocol.messages import Auth, Challenge, Error, Heartbeat, Hello, Welcome

TOKENS = {(Role.AGENT, "web-1"): "agent-token", (Role.ADMIN, "alice"): "admin-token"}
DEADLINE_S = 5.0
PEER = "[::1]:40404"


def lookup(role: Role, name: str) -> bytes | None:
    token = TOKENS.get((role, name))
    return None if token is None else token_key(token)


def welcome(hello: Hello) -> Welcome:
    return Welcome(server="test", heartbeat_ms=1000, max_body=1 << 20, last_event_seq=7)


class Tap(trio.abc.Stream):
    """A stream that records every byte the client sends (a passive eavesdropper)."""

    def __init__(self, inner: trio.abc.Stream) -> None:
        self.inner = inner
        self.sent = bytearray()

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        self.sent += data
        await self.inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        return await self.inner.receive_some(max_bytes)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def serve_one(server: FramedStream, allowed_role: Role = Role.AGENT,
                    timeout: float = DEADLINE_S) -> Hello | LotcError:
    """server_handshake as transport.serve runs it; returns its Hello or its error."""
    try:
        return await server_handshake(server, lookup, welcome, allowed_role=allowed_role,
                                      timeout=timeout)
    except LotcError as exc:
        await server.send_error(exc)
        return exc
    finally:
        await server.aclose()


async def both(client: Callable[[FramedStream], Awaitable[Any]],
               server: Callable[[FramedStream], Awaitable[Any]],
) -> tuple[Any, Any, bytes]:
    """Run the two ends at once; returns (client outcome, server outcome, client bytes)."""
    client_end, server_end = trio.testing.memory_stream_pair()
    tapped = Tap(client_end)
    client_framed = FramedStream(tapped, peer="server")
    server_framed = FramedStream(server_end, peer=PEER)
    outcomes: dict[str, Any] = {}

    async def run(key: str, work: Callable[[], Awaitable[Any]]) -> None:
        try:
            outcomes[key] = await work()
        except (LotcError, PeerClosed, trio.TooSlowError) as exc:
            outcomes[key] = exc

    with trio.fail_after(DEADLINE_S * 2):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(run, "client", lambda: client(client_framed))
            nursery.start_soon(run, "server", lambda: server(server_framed))
    return outcomes["client"], outcomes["server"], bytes(tapped.sent)


def as_client(role: Role, name: str, token: str) -> Callable[[FramedStream], Awaitable[Any]]:
    return lambda framed: client_handshake(framed, role=role, name=name, token=token,
                                           hostname="node-1", timeout=DEADLINE_S)


async def test_good_token_is_welcomed() -> None:
    client, server, _ = await both(as_client(Role.AGENT, "web-1", "agent-token"), serve_one)
    assert isinstance(client, Welcome) and client.last_event_seq == 7
    assert isinstance(server, Hello)
    assert (server.role, server.name, server.hostname) == (Role.AGENT, "web-1", "node-1")


async def test_the_token_never_crosses_the_wire() -> None:
    _, _, sent = await both(as_client(Role.AGENT, "web-1", "agent-token"), serve_one)
    assert b"agent-token" not in sent
    assert token_key("agent-token") not in sent


async def test_wrong_token_fails() -> None:
    client, server, _ = await both(as_client(Role.AGENT, "web-1", "guess"), serve_one)
    assert isinstance(server, AuthFailed)
    assert isinstance(client, AuthFailed)
    assert str(client) == auth_failure_message(Role.AGENT, "web-1")
    assert "check that the token is web-1's" in str(client)


async def test_unknown_name_fails_like_a_wrong_token() -> None:
    client, server, _ = await both(as_client(Role.AGENT, "ghost", "agent-token"), serve_one)
    assert isinstance(client, AuthFailed) and isinstance(server, AuthFailed)
    # Same words as for a wrong token: the reply does not reveal which names exist.
    assert str(client) == auth_failure_message(Role.AGENT, "ghost")


@pytest.mark.parametrize("name, token", [("web-1", "guess"), ("ghost", "agent-token")])
async def test_a_failed_auth_is_logged_once_with_the_peer_address(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture, name: str, token: str
) -> None:
    """Through the real boundary (transport.serve over TCP), as the servers run it."""
    caplog.set_level(logging.DEBUG)
    listeners = await open_listeners([Address("127.0.0.1", 0)])
    address = bound_address(listeners[0])

    async def handler(framed: FramedStream) -> None:
        await server_handshake(framed, lookup, welcome, allowed_role=Role.AGENT,
                               timeout=DEADLINE_S)

    await nursery.start(partial(serve, handler, listeners, max_body=1 << 20,
                                send_timeout=DEADLINE_S))
    framed = await connect(address, max_body=1 << 20, send_timeout=DEADLINE_S)
    try:
        local = Address(*framed.stream.socket.getsockname()[:2])  # type: ignore[attr-defined]
        with pytest.raises(AuthFailed):
            await client_handshake(framed, role=Role.AGENT, name=name, token=token,
                                   timeout=DEADLINE_S)
    finally:
        await framed.aclose()
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(lines) == 1, lines  # the first of its window (lotc/net/refusals.py)
    assert lines[0].startswith(f"closing {local}: {auth_failure_message(Role.AGENT, name)}")
    assert all(token not in r.getMessage() for r in caplog.records)


async def test_a_token_of_the_other_role_fails() -> None:
    # alice's admin token presented on the agent port, as an agent named alice
    client, server, _ = await both(as_client(Role.AGENT, "alice", "admin-token"), serve_one)
    assert isinstance(client, AuthFailed) and isinstance(server, AuthFailed)


async def test_replayed_auth_from_a_recorded_exchange_fails() -> None:
    client, _, recorded = await both(as_client(Role.AGENT, "web-1", "agent-token"), serve_one)
    assert isinstance(client, Welcome)
    frames = FrameDecoder().feed(recorded)
    assert [type(f.body) for f in frames] == [Hello, Auth]

    async def replay(framed: FramedStream) -> Any:
        await framed.send_bytes(recorded)  # HELLO and the old AUTH, as captured
        challenge = (await framed.receive()).body
        assert isinstance(challenge, Challenge)
        reply = (await framed.receive()).body
        return reply

    reply, server, _ = await both(replay, serve_one)
    assert isinstance(server, AuthFailed)
    assert isinstance(reply, Error) and reply.code == ErrorCode.AUTH_FAILED


async def test_every_connection_gets_a_fresh_nonce() -> None:
    nonces = []
    for _ in range(3):
        async def hello_only(framed: FramedStream) -> Any:
            await framed.send(Hello(role=Role.AGENT, name="web-1"), 1)
            return (await framed.receive()).body

        challenge, _, _ = await both(hello_only, lambda s: serve_one(s, timeout=0.05))
        nonces.append(challenge.nonce)
    assert len(set(nonces)) == 3 and all(len(n) == 32 for n in nonces)


async def test_mac_binds_role_and_name() -> None:
    key, nonce = token_key("t"), b"n" * 32
    assert compute_mac(key, nonce, Role.AGENT, "a") != compute_mac(key, nonce, Role.ADMIN, "a")
    assert compute_mac(key, nonce, Role.AGENT, "a") != compute_mac(key, nonce, Role.AGENT, "b")


async def test_wrong_role_for_the_port_is_not_allowed() -> None:
    client, server, sent = await both(as_client(Role.ADMIN, "alice", "admin-token"), serve_one)
    assert isinstance(server, NotAllowed) and isinstance(client, NotAllowed)
    assert "this port serves agents, not admins" in str(client)
    # Refused before any challenge: the client never got to send AUTH.
    assert [type(f.body) for f in FrameDecoder().feed(sent)] == [Hello]


async def test_a_silent_peer_times_out(autojump_clock: trio.testing.MockClock) -> None:
    async def silent(framed: FramedStream) -> Any:
        return await framed.receive()  # says nothing; waits for what the server does

    start = trio.current_time()
    client, server, _ = await both(silent, lambda s: serve_one(s, timeout=3.0))
    assert isinstance(server, RequestTimeout)
    assert trio.current_time() - start == pytest.approx(3.0)
    # It is told why before the server hangs up.
    assert isinstance(client.body, Error) and client.body.code == ErrorCode.TIMEOUT


async def test_a_peer_stalling_mid_handshake_times_out(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def stall_after_hello(framed: FramedStream) -> Any:
        await framed.send(Hello(role=Role.AGENT, name="web-1"), 1)
        await framed.receive()  # the challenge
        await framed.send_bytes(encode(Auth(mac=b"x" * 32), 2)[:10])  # half a header
        return await framed.receive()

    client, server, _ = await both(stall_after_hello, lambda s: serve_one(s, timeout=3.0))
    assert isinstance(server, RequestTimeout)
    assert client.body.code == ErrorCode.TIMEOUT


@pytest.mark.parametrize(("first", "why"), [
    # The CONTRACT refuses what a client never sends during a handshake...
    (Heartbeat(seq=1), "an agent may not send HEARTBEAT during the handshake"),
    (Welcome(), "an agent may not send WELCOME during the handshake"),
    (Challenge(nonce=b"n" * 32), "an agent may not send CHALLENGE during the handshake"),
    # ...and the handshake itself its order.
    (Auth(mac=b"m" * 32), "expected Hello, got Auth"),
])
async def test_a_first_frame_that_is_not_hello_is_refused(first: Any, why: str) -> None:
    async def wrong_first(framed: FramedStream) -> Any:
        await framed.send(first, 1)
        return (await framed.receive()).body

    reply, server, _ = await both(wrong_first, serve_one)
    assert isinstance(server, ProtocolError) and server.code == ErrorCode.UNEXPECTED_MESSAGE
    assert isinstance(reply, Error) and reply.code == ErrorCode.UNEXPECTED_MESSAGE
    assert why in reply.message


async def test_an_error_frame_from_the_client_is_just_unexpected(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A client cannot make the server raise (and log) an error of its choosing."""
    forged = "all is well\nCRITICAL lotc.server: forged log line"

    async def sends_error(framed: FramedStream) -> Any:
        await framed.send(Error(code=ErrorCode.INTERNAL, message=forged), 1)
        return (await framed.receive()).body

    caplog.set_level(logging.DEBUG)
    reply, server, _ = await both(sends_error, serve_one)
    assert isinstance(server, ProtocolError) and server.code == ErrorCode.UNEXPECTED_MESSAGE
    assert reply.code == ErrorCode.UNEXPECTED_MESSAGE
    assert "forged" not in str(server)
    assert all("forged" not in r.getMessage() for r in caplog.records)


async def test_bad_bytes_during_the_handshake_are_a_protocol_error() -> None:
    async def garbage(framed: FramedStream) -> Any:
        await framed.send_bytes(b"GET / HTTP/1.1\r\nHost: lotc\r\n\r\n")
        return (await framed.receive()).body

    reply, server, _ = await both(garbage, serve_one)
    assert isinstance(server, ProtocolError) and server.code == ErrorCode.BAD_MAGIC
    assert reply.code == ErrorCode.BAD_MAGIC


async def test_client_reports_the_servers_refusal_of_hello() -> None:
    async def refusing_server(framed: FramedStream) -> Any:
        await framed.receive()
        await framed.send(Error(code=ErrorCode.TOKEN_REVOKED, message="revoked"), 1)
        await framed.aclose()

    client, _, _ = await both(as_client(Role.AGENT, "web-1", "agent-token"), refusing_server)
    assert isinstance(client, LotcError) and client.code == ErrorCode.TOKEN_REVOKED
