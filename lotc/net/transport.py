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

from lotc.errors import LocalProtocolError, LotcError
from lotc.net.address import Address
from lotc.net.endings import CONNECTION_ENDED, principal
from lotc.net.framed import FramedStream

logger = logging.getLogger(__name__)

DEFAULT_CONNECT_TIMEOUT_S = 10.0
TLS_HANDSHAKE_TIMEOUT_S = 10.0


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
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Accept connections forever, one task each, each isolated from the others."""

    async def guarded(stream: trio.abc.Stream) -> None:
        framed = FramedStream(
            stream, peer=peer_name(stream), max_body=max_body, send_timeout=send_timeout
        )
        try:
            await handler(framed)
        except Exception as exc:  # noqa: BLE001  one connection's failure must stay its own
            await _report_ending(framed, principal(exc))
        finally:
            await framed.aclose()

    async with trio.open_nursery() as nursery:
        for listener in listeners:
            nursery.start_soon(trio.serve_listeners, guarded, [listener])
        task_status.started()


async def _report_ending(framed: FramedStream, exc: BaseException) -> None:
    if isinstance(exc, CONNECTION_ENDED):
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
