"""Opening connections and listeners: TCP on IPv4 and IPv6, optionally TLS.

`serve` wraps every connection handler so that one failing connection is
logged and closed and never takes the server down (an exception escaping a
trio.serve_listeners handler would crash the whole nursery).
"""
from __future__ import annotations

import logging
import ssl
from collections.abc import Awaitable, Callable, Sequence

import trio

from lotc.errors import AuthFailed, LocalProtocolError, LotcError, TokenRevoked
from lotc.net.address import Address
from lotc.net.endings import CONNECTION_ENDED, principal
from lotc.net.framed import FramedStream
from lotc.net.refusals import FAILED_LOGIN, Refusals, login_delay, source_of

logger = logging.getLogger(__name__)

DEFAULT_CONNECT_TIMEOUT_S = 10.0
TLS_HANDSHAKE_TIMEOUT_S = 10.0
# OpenSSL's reasons when the first bytes are not a TLS record (plain LOTC, HTTP...).
NOT_TLS_REASONS = frozenset({"WRONG_VERSION_NUMBER", "HTTP_REQUEST", "HTTPS_PROXY_REQUEST",
                             "UNKNOWN_PROTOCOL", "PACKET_LENGTH_TOO_LONG"})


class TlsHandshakeFailed(ConnectionError):
    """The peer is not a TLS server we trust (plain server, wrong CA, wrong name)."""


Handler = Callable[[FramedStream], Awaitable[None]]


def peer_name(stream: trio.abc.Stream) -> str:
    """`HOST:PORT` / `[V6]:PORT` of the remote end, for logs."""
    inner = stream.transport_stream if isinstance(stream, trio.SSLStream) else stream
    try:
        host, port = inner.socket.getpeername()[:2]  # type: ignore[union-attr]
    except (AttributeError, OSError):
        return "?"
    return str(Address(host, port))


async def open_listeners(
    addresses: Sequence[Address], ssl_context: ssl.SSLContext | None = None
) -> list[trio.abc.Listener[trio.abc.Stream]]:
    listeners: list[trio.abc.Listener[trio.abc.Stream]] = []
    for address in addresses:
        for listener in await trio.open_tcp_listeners(address.port, host=address.host):
            if ssl_context is not None:
                listeners.append(trio.SSLListener(listener, ssl_context))
            else:
                listeners.append(listener)
    return listeners


def bound_address(listener: trio.abc.Listener[trio.abc.Stream]) -> Address:
    inner = listener.transport_listener if isinstance(listener, trio.SSLListener) else listener
    host, port = inner.socket.getsockname()[:2]  # type: ignore[union-attr]
    return Address(host, port)


async def serve(
    handler: Handler,
    listeners: Sequence[trio.abc.Listener[trio.abc.Stream]],
    *,
    max_body: int,
    send_timeout: float,
    refusals: Refusals | None = None,
    tally: dict[int, int] | None = None,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Accept connections forever, one task each, each isolated from the others.

    With `refusals`, failed logins and failed TLS handshakes are logged once per
    source and window, and repeated failed logins are answered slowly (refusals.py).
    With `tally`, the frames every connection receives are counted per message type.
    """
    refusals = refusals if refusals is not None else Refusals()

    async def guarded(stream: trio.abc.Stream) -> None:
        framed = FramedStream(
            stream, peer=peer_name(stream), max_body=max_body, send_timeout=send_timeout,
            tally=tally)
        try:
            await handler(framed)
        except Exception as exc:  # noqa: BLE001  one connection's failure must stay its own
            await _report_ending(framed, principal(exc), refusals)
        finally:
            await framed.aclose()

    async with trio.open_nursery() as nursery:
        for listener in listeners:
            nursery.start_soon(trio.serve_listeners, guarded, [listener])
        task_status.started()


async def _report_ending(framed: FramedStream, exc: BaseException, refusals: Refusals) -> None:
    tls_failure = _tls_failure(framed, exc)
    if tls_failure is not None:
        kind, what = tls_failure
        refusals.note(source_of(framed.peer), kind, f"closing {framed.peer}: {what}")
    elif isinstance(exc, (AuthFailed, TokenRevoked)):
        await _refuse_login(framed, exc, refusals)
    elif isinstance(exc, CONNECTION_ENDED):
        logger.debug("connection %s ended: %s", framed.peer, exc or type(exc).__name__)
    elif isinstance(exc, LocalProtocolError):  # our bug; handlers answer it as INTERNAL
        logger.error("connection handler for %s could not encode a frame", framed.peer,
                     exc_info=exc)
        await framed.send_error(exc)
    elif isinstance(exc, LotcError):
        logger.warning("closing %s: %s", framed.peer, exc)
        await framed.send_error(exc)
    else:
        logger.error("connection handler for %s failed", framed.peer, exc_info=exc)


def _tls_failure(framed: FramedStream, exc: BaseException) -> tuple[str, str] | None:
    """(kind, what went wrong) when `exc` is our TLS layer refusing the peer; else None."""
    cause = exc.__cause__
    if not (isinstance(framed.stream, trio.SSLStream) and isinstance(exc, trio.BrokenResourceError)
            and isinstance(cause, ssl.SSLError)):
        return None
    if cause.reason in NOT_TLS_REASONS:
        return "non-TLS client", ("the client is not TLS: give agents and consoles --tls-ca, "
                                  f"or run this server without --tls-cert ({cause.reason})")
    if isinstance(cause, ssl.SSLEOFError) or cause.reason == "UNEXPECTED_EOF_WHILE_READING":
        return None  # connected and left (a port probe, a health check): routine
    return "failed TLS handshake", f"TLS handshake failed: {cause.reason or cause}"


async def _refuse_login(framed: FramedStream, exc: LotcError, refusals: Refusals) -> None:
    source = source_of(framed.peer)
    failures = refusals.note(source, FAILED_LOGIN, f"closing {framed.peer}: {exc}")
    delay = login_delay(failures)
    with refusals.hold(source) as may_wait:
        if delay and may_wait:
            await trio.sleep(delay)
    await framed.send_error(exc)


async def connect(
    address: Address,
    *,
    ssl_context: ssl.SSLContext | None = None,
    max_body: int,
    send_timeout: float,
    timeout: float = DEFAULT_CONNECT_TIMEOUT_S,
) -> FramedStream:
    """Open a framed connection; TLS when a context is given."""
    with trio.fail_after(timeout):
        tcp = await trio.open_tcp_stream(address.host, address.port)
    stream: trio.abc.Stream = tcp
    if ssl_context is not None:
        tls = trio.SSLStream(tcp, ssl_context, server_hostname=address.host)
        try:
            with trio.fail_after(TLS_HANDSHAKE_TIMEOUT_S):
                await tls.do_handshake()
        except trio.BrokenResourceError as exc:
            await trio.aclose_forcefully(tcp)
            cause = exc.__cause__ or exc
            raise TlsHandshakeFailed(
                f"TLS handshake with {address} failed ({cause}): is it a TLS server, and is its "
                "certificate signed by the CA given?") from None
        except BaseException:
            await trio.aclose_forcefully(tcp)
            raise
        stream = tls
    return FramedStream(stream, peer=str(address), max_body=max_body, send_timeout=send_timeout)
