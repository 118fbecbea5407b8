"""Challenge-response authentication: the token never crosses the wire.

Client                          Server
  HELLO(role, name, ...)   ->
                           <-   CHALLENGE(nonce: 32 random bytes, fresh per connection)
  AUTH(mac)                ->   mac == HMAC-SHA256(key, nonce || role || name)?
                           <-   WELCOME(...)  or  ERROR(AUTH_FAILED) and close

key = SHA-256(token). The server stores only that digest, never the token, so
a leaked database does not reveal tokens (it does allow impersonation until
the tokens are revoked: the digest is the shared secret). Binding role and
name into the MAC ties a token to one agent or admin name, and the fresh nonce
makes a recorded AUTH useless on another connection.

A client whose MAC is right for a revoked token is told TOKEN_REVOKED, not
AUTH_FAILED: it proved it holds that token, so the answer reveals nothing it
did not know, and its agent can stop retrying every few seconds. Anyone else
(an unknown name, a wrong token) gets the same AUTH_FAILED as before.
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Callable, Sequence

import trio

from lotc import __version__
from lotc.errors import AuthFailed, NotAllowed, RequestTimeout, TokenRevoked, error_for_code
from lotc.net.framed import FramedStream
from protocol import contract
from protocol.enums import Role
from protocol.errors import ErrorCode, ProtocolError
from protocol.message_types import Leg, Phase
from protocol.messages import Auth, Challenge, Error, Hello, Message, Timing, Welcome

logger = logging.getLogger(__name__)

DEFAULT_HANDSHAKE_TIMEOUT_S = 10.0
NONCE_SIZE = 32


def token_key(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


def compute_mac(key: bytes, nonce: bytes, role: Role, name: str) -> bytes:
    message = nonce + bytes([int(role)]) + name.encode("utf-8")
    return hmac.new(key, message, hashlib.sha256).digest()


def _expect(frame_body: Message, cls: type, leg: Leg, *, peer_errors: bool = True) -> None:
    # The CONTRACT first: what may not travel this leg during a handshake at all (a
    # server-only message from a client, a request before authenticating) is refused
    # from the table; the order of the handshake's own messages is checked below.
    contract.check(leg, Phase.HANDSHAKE, frame_body.TYPE)
    # Only the client believes an ERROR from its peer (the server's refusal). The server
    # treats a client's ERROR as any other wrong frame: otherwise a hostile client could
    # make it raise, log and echo an error class and text of the client's choosing.
    if peer_errors and isinstance(frame_body, Error):
        raise error_for_code(frame_body.code, frame_body.message)
    if not isinstance(frame_body, cls):
        raise ProtocolError(
            f"expected {cls.__name__}, got {type(frame_body).__name__}",
            ErrorCode.UNEXPECTED_MESSAGE,
        )


async def client_handshake(
    framed: FramedStream,
    *,
    role: Role,
    name: str,
    token: str,
    hostname: str = "",
    addresses: Sequence[str] = (),
    capabilities: Sequence[str] = (),
    timeout: float = DEFAULT_HANDSHAKE_TIMEOUT_S,
) -> Welcome:
    """Authenticate as `name`; returns the server's WELCOME or raises its error."""
    with trio.fail_after(timeout):
        hello = Hello(
            role=role,
            name=name,
            software=f"lotc {__version__}",
            hostname=hostname,
            addresses=tuple(addresses),
            capabilities=tuple(capabilities),
        )
        await framed.send(hello, request_id=1)
        to_client = contract.LEGS_OF[role][1]
        challenge = (await framed.receive()).body
        _expect(challenge, Challenge, to_client)
        assert isinstance(challenge, Challenge)
        mac = compute_mac(token_key(token), challenge.nonce, role, name)
        await framed.send(Auth(mac=mac), request_id=2)
        welcome = (await framed.receive()).body
        _expect(welcome, Welcome, to_client)
        assert isinstance(welcome, Welcome)
        return welcome


KeyLookup = Callable[[Role, str], bytes | None]


def auth_failure_message(role: Role, name: str) -> str:
    """What a refused client hears: the name it tried, and what to check."""
    kind = role.name.lower()
    return (f"authentication failed for {kind} {name!r}: check that the token is {name}'s "
            f"and still live in this server's database (not revoked; `lotc token create "
            f"--{kind} {name}` makes one); a token made by an older lotc also needs --name")


async def server_handshake(
    framed: FramedStream,
    lookup_key: KeyLookup,
    make_welcome: Callable[[Hello], Welcome],
    *,
    allowed_role: Role,
    timeout: float = DEFAULT_HANDSHAKE_TIMEOUT_S,
    revoked_key: KeyLookup | None = None,
    make_timing: Callable[[Hello], Timing | None] | None = None,
) -> Hello:
    """Authenticate the peer; returns its HELLO, or raises AuthFailed / ProtocolError.

    `make_timing` gives the TIMING sent right after WELCOME (None: none for this peer),
    so that it is the first frame the peer reads once authenticated.

    `revoked_key` finds the key of a revoked token: a peer proving it holds one
    gets TokenRevoked instead of AuthFailed.

    A peer that says nothing, or too slowly, gets RequestTimeout after `timeout`:
    a LotcError like the others, so the boundary answers it with an ERROR frame
    and logs it once (a bare trio.TooSlowError reads as a routine ending).
    """
    try:
        with trio.fail_after(timeout):
            hello = await _server_exchange(
                framed, lookup_key, make_welcome, allowed_role, revoked_key)
            timing = None if make_timing is None else make_timing(hello)
            if timing is not None:
                await framed.send(timing)
            return hello
    except trio.TooSlowError:
        raise RequestTimeout(f"no complete handshake within {timeout:g} s") from None


async def _server_exchange(
    framed: FramedStream,
    lookup_key: KeyLookup,
    make_welcome: Callable[[Hello], Welcome],
    allowed_role: Role,
    revoked_key: KeyLookup | None,
) -> Hello:
    from_client = contract.LEGS_OF[allowed_role][0]  # this port's clients
    frame = await framed.receive()
    hello = frame.body
    _expect(hello, Hello, from_client, peer_errors=False)
    assert isinstance(hello, Hello)
    if hello.role != allowed_role:
        raise NotAllowed(
            f"this port serves {allowed_role.name.lower()}s, not {hello.role.name.lower()}s:"
            " check the port (agents and consoles listen on different ones)"
        )
    nonce = secrets.token_bytes(NONCE_SIZE)
    await framed.send(
        Challenge(nonce=nonce, server_time_us=time.time_ns() // 1000), frame.request_id
    )
    frame = await framed.receive()
    _expect(frame.body, Auth, from_client, peer_errors=False)
    assert isinstance(frame.body, Auth)
    key = lookup_key(hello.role, hello.name)
    expected = compute_mac(key or b"", nonce, hello.role, hello.name)
    # compare_digest even for unknown names, so timing does not reveal which names exist
    if not hmac.compare_digest(expected, frame.body.mac) or key is None:
        # Not logged here: the connection's boundary (transport.serve) logs refusals,
        # with the peer's address; logging here too made each failure two lines.
        who = f"{hello.role.name.lower()} {hello.name!r}"
        if _holds_revoked(revoked_key, nonce, hello, frame.body.mac):
            raise TokenRevoked(f"the token of {who} was revoked: create a new one "
                               f"(lotc token create) and give it to the {hello.role.name.lower()}")
        raise AuthFailed(auth_failure_message(hello.role, hello.name))
    await framed.send(make_welcome(hello), frame.request_id)
    return hello


def _holds_revoked(revoked_key: KeyLookup | None, nonce: bytes, hello: Hello, mac: bytes) -> bool:
    """True when `mac` proves the peer holds `hello.name`'s revoked token."""
    key = None if revoked_key is None else revoked_key(hello.role, hello.name)
    return key is not None and hmac.compare_digest(
        compute_mac(key, nonce, hello.role, hello.name), mac)
