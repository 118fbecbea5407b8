"""The console's connection to the server's admin port.

Theory of operation
-------------------
One AdminClient owns one authenticated FramedStream and two background tasks:
a receive loop and a heartbeat loop. Every request gets a fresh non-zero
request id and an `Exchange`: a bounded channel the receive loop feeds with
the frames that echo that id. A reply is one or more frames; every frame
flagged MORE is partial and the first frame without MORE ends it. An ERROR
frame ends a request with failure and is raised as the lotc.errors class of
its code. Frames with request id 0 are unsolicited: HEARTBEATs are dropped,
anything else goes to `on_unsolicited` (the REPL prints events with it).

When the connection ends, for whatever reason, every pending exchange is
woken and raises ConnectionLost with the reason in plain words, so no caller
waits forever. Every wait has a deadline named below, except follow streams
(`logs -f`, `events -f`), which last until the caller cancels them.
"""
from __future__ import annotations

import itertools
import logging
import socket
import ssl
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import trio

from admin_console.errors import ConnectionLost
from lotc import timing
from lotc.errors import RequestTimeout, error_for_code
from lotc.exc_groups import lone_error
from lotc.net.address import Address
from lotc.net.auth import client_handshake
from lotc.net.framed import FramedStream, PeerClosed
from lotc.net.transport import connect as open_framed
from protocol import contract
from protocol.codec import Frame
from protocol.enums import Role
from protocol.errors import ProtocolError
from protocol.message_types import DEFAULT_MAX_BODY, Leg, Phase
from protocol.messages import Cancel, Error, Heartbeat, Message, Timing, Welcome

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 10.0
CONNECT_RETRY_S = 0.1  # --wait: how often to try a server that is not listening yet
HANDSHAKE_TIMEOUT_S = 10.0
SEND_TIMEOUT_S = 10.0
# The server waits up to 15 s for agents before it answers; leave it room.
REQUEST_TIMEOUT_S = 30.0
# After CANCEL, the server ends a follow stream with OK at once; this is generous.
CANCEL_TIMEOUT_S = 10.0
# How long the server may be silent before the console says the connection is lost:
# derived from the server's TIMING (lotc/timing.py); this until it comes (an older
# server sends none).
SERVER_SILENCE_LIMIT_S = timing.LEGACY_CONSOLE_SERVER_SILENCE_S
DEFAULT_HEARTBEAT_S = 5.0  # used when WELCOME gives no interval
REPLY_BUFFER = 64  # frames buffered per request before the receive loop waits
MAX_REQUEST_ID = 2**32 - 1

Unsolicited = Callable[[Frame], None]


class Exchange:
    """The frames of one request id, in arrival order."""

    def __init__(self, client: AdminClient, request_id: int,
                 receive: trio.MemoryReceiveChannel[Frame]) -> None:
        self.client = client
        self.request_id = request_id
        self._receive = receive
        self.finished = False

    async def send(self, body: Message, more: bool = False) -> None:
        await self.client.send(body, self.request_id, more)

    async def next_frame(self, timeout: float | None = REQUEST_TIMEOUT_S) -> Frame:
        """Next frame of the reply; raises the server's error, ConnectionLost or RequestTimeout."""
        try:
            if timeout is None:
                frame = await self._receive.receive()
            else:
                with trio.fail_after(timeout):
                    frame = await self._receive.receive()
        except trio.EndOfChannel:
            raise ConnectionLost(self.client.lost_reason or "connection closed") from None
        except trio.TooSlowError:
            raise RequestTimeout(f"no reply from the server within {timeout:g} s") from None
        return self._check(frame)

    def poll(self) -> Frame | None:
        """A frame already received, if any (an upload checks for an early ERROR)."""
        try:
            frame = self._receive.receive_nowait()
        except trio.WouldBlock:
            return None
        except trio.EndOfChannel:
            raise ConnectionLost(self.client.lost_reason or "connection closed") from None
        return self._check(frame)

    def _check(self, frame: Frame) -> Frame:
        if not frame.more:
            self.finished = True
        if isinstance(frame.body, Error):
            self.finished = True
            raise error_for_code(frame.body.code, frame.body.message)
        return frame

    def close(self) -> None:
        self.client._forget(self.request_id)
        self._receive.close()


class ReplyStream:
    """Async iterator over a reply's frames (the final one included); `cancel` ends a follow."""

    def __init__(self, exchange: Exchange, idle_timeout: float | None) -> None:
        self.exchange = exchange
        self.idle_timeout = idle_timeout
        self.cancelled = False

    @property
    def request_id(self) -> int:
        return self.exchange.request_id

    def __aiter__(self) -> ReplyStream:
        return self

    async def __anext__(self) -> Frame:
        if self.exchange.finished:
            raise StopAsyncIteration
        timeout = CANCEL_TIMEOUT_S if self.cancelled else self.idle_timeout
        return await self.exchange.next_frame(timeout)

    async def cancel(self) -> None:
        """Ask the server to end this follow stream; keep iterating to get its final OK."""
        if self.cancelled or self.exchange.finished:
            return
        self.cancelled = True
        await self.exchange.client.cancel(self.request_id)


def _refused(exc: OSError) -> bool:
    """Connection refused, also inside trio's "all attempts failed" (one per address)."""
    cause = exc.__cause__
    if isinstance(cause, BaseExceptionGroup):
        return all(isinstance(e, ConnectionRefusedError) for e in cause.exceptions)
    return isinstance(exc, ConnectionRefusedError)


async def _open_when_listening(address: Address, ssl_context: ssl.SSLContext | None,
                               wait_s: float) -> FramedStream:
    deadline = trio.current_time() + wait_s
    while True:
        try:
            return await open_framed(address, ssl_context=ssl_context, max_body=DEFAULT_MAX_BODY,
                                     send_timeout=SEND_TIMEOUT_S, timeout=CONNECT_TIMEOUT_S)
        except OSError as exc:
            if not _refused(exc) or trio.current_time() + CONNECT_RETRY_S > deadline:
                raise
        await trio.sleep(CONNECT_RETRY_S)


class AdminClient:
    """An authenticated admin connection. Make one with `AdminClient.connect(...)`."""

    def __init__(self, framed: FramedStream, welcome: Welcome, address: Address | None = None,
                 on_unsolicited: Unsolicited | None = None) -> None:
        self.framed = framed
        self.welcome = welcome
        self.address = address
        self.on_unsolicited = on_unsolicited
        self.lost_reason: str | None = None
        self._ids = itertools.count(1)
        self._pending: dict[int, trio.MemorySendChannel[Frame]] = {}
        self._server_error: str | None = None
        self.server_silence_limit_s = SERVER_SILENCE_LIMIT_S
        self._lost = trio.Event()  # the REPL waits on it to start reconnecting

    @classmethod
    @asynccontextmanager
    async def connect(
        cls, address: Address, *, token: str, name: str,
        ssl_context: ssl.SSLContext | None = None, hostname: str | None = None,
        on_unsolicited: Unsolicited | None = None, wait_s: float = 0.0,
    ) -> AsyncIterator[AdminClient]:
        """Connect, authenticate and run the background tasks until the block ends.

        `wait_s`: a server that refuses the connection (not listening yet: a script
        has just started it) is tried again until that many seconds have passed.
        """
        framed = await _open_when_listening(address, ssl_context, wait_s)
        try:
            welcome = await client_handshake(
                framed, role=Role.ADMIN, name=name, token=token,
                hostname=hostname if hostname is not None else socket.gethostname(),
                capabilities=(timing.CAPABILITY,), timeout=HANDSHAKE_TIMEOUT_S,
            )
            client = cls(framed, welcome, address, on_unsolicited)
            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(client._receive_loop)
                    nursery.start_soon(client._heartbeat_loop)
                    try:
                        yield client
                    finally:
                        nursery.cancel_scope.cancel()
            except BaseExceptionGroup as group:
                # The background tasks end quietly, so a group holds the caller's own
                # exception: give it back as raised, not wrapped by our nursery.
                lone = lone_error(group)
                if lone is group:
                    raise
                raise lone from None
        finally:
            await framed.aclose()

    @property
    def connected(self) -> bool:
        return self.lost_reason is None

    async def wait_lost(self) -> str:
        """Return the reason, in plain words, once the connection has ended."""
        await self._lost.wait()
        return self.lost_reason or "connection closed"

    # ------------------------------------------------------------ requests

    def open_exchange(self) -> Exchange:
        if self.lost_reason is not None:
            raise ConnectionLost(self.lost_reason)
        request_id = next(self._ids)
        if request_id > MAX_REQUEST_ID:  # a console would need years to get here; wrap anyway
            self._ids = itertools.count(2)
            request_id = 1
        send, receive = trio.open_memory_channel[Frame](REPLY_BUFFER)
        self._pending[request_id] = send
        return Exchange(self, request_id, receive)

    @asynccontextmanager
    async def stream(self, body: Message, *, follow: bool = False,
                     idle_timeout: float = REQUEST_TIMEOUT_S) -> AsyncIterator[ReplyStream]:
        """Send `body` and iterate its reply frames.

        Each frame must come within idle_timeout, except in a follow stream, which
        waits as long as it takes (it ends when the caller cancels it).
        """
        exchange = self.open_exchange()
        try:
            await exchange.send(body)
            yield ReplyStream(exchange, None if follow else idle_timeout)
        finally:
            exchange.close()

    async def request(self, body: Message, timeout: float = REQUEST_TIMEOUT_S) -> list[Frame]:
        """Send `body`, collect every frame of its reply; raise the server's error."""
        try:
            with trio.fail_after(timeout):
                async with self.stream(body, follow=True) as reply:  # deadline: fail_after
                    return [frame async for frame in reply]
        except trio.TooSlowError:
            raise RequestTimeout(f"no reply from the server within {timeout:g} s") from None

    async def cancel(self, request_id: int) -> None:
        await self.send(Cancel(cancel_request_id=request_id))

    async def send(self, body: Message, request_id: int = 0, more: bool = False) -> None:
        if self.lost_reason is not None:
            raise ConnectionLost(self.lost_reason)
        try:
            # Ctrl-C in the REPL cancels a command anywhere; half a frame on the wire
            # would corrupt the stream, so a frame once begun is finished (within the
            # framed stream's own send deadline)
            with trio.CancelScope(shield=True):
                await self.framed.send(body, request_id, more)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise ConnectionLost(self.lost_reason or f"connection lost: {exc}") from None
        except trio.TooSlowError:
            raise ConnectionLost(
                f"the server has not read for {SEND_TIMEOUT_S:g} s: giving up") from None

    def _forget(self, request_id: int) -> None:
        send = self._pending.pop(request_id, None)
        if send is not None:
            send.close()

    # ------------------------------------------------------------ background tasks

    async def _receive_loop(self) -> None:
        reason = "connection closed"
        try:
            while True:
                frame = await self.framed.receive_within(self.server_silence_limit_s)
                # The CONTRACT, as every receiver checks it: a frame the server may not
                # send a console ends the connection ("the server sent bad data").
                contract.check(Leg.SERVER_TO_ADMIN, Phase.AUTHENTICATED, frame.body.TYPE)
                await self._dispatch(frame)
        except trio.TooSlowError:
            reason = f"the server has been silent for {self.server_silence_limit_s:g} s"
        except PeerClosed:
            reason = "the server closed the connection"
        except trio.BrokenResourceError:
            reason = "the connection to the server broke"
        except trio.ClosedResourceError:
            reason = "connection closed"
        except ProtocolError as exc:
            reason = f"the server sent bad data: {exc}"
        finally:
            self._lose(reason)

    def _lose(self, reason: str) -> None:
        if self._server_error:
            reason = f"{reason}: {self._server_error}"
        self.lost_reason = reason
        self._lost.set()
        logger.debug("admin connection lost: %s", reason)
        for send in self._pending.values():
            send.close()  # wakes the waiter, which raises ConnectionLost
        self._pending.clear()

    async def _dispatch(self, frame: Frame) -> None:
        if frame.request_id == 0:
            self._unsolicited(frame)
            return
        send = self._pending.get(frame.request_id)
        if send is None:
            logger.debug("dropping a %s for finished request %d",
                         type(frame.body).__name__, frame.request_id)
            return
        try:
            await send.send(frame)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            logger.debug("request %d was abandoned", frame.request_id)

    def _unsolicited(self, frame: Frame) -> None:
        if isinstance(frame.body, Heartbeat):
            return
        if isinstance(frame.body, Timing):
            self._take_timing(frame.body)
            return
        if isinstance(frame.body, Error):
            # the server says why before it closes (token revoked, protocol error...)
            self._server_error = frame.body.message
            return
        if self.on_unsolicited is not None:
            self.on_unsolicited(frame)

    def _take_timing(self, message: Timing) -> None:
        """The server's numbers: its silence limit is derived from them from now on."""
        try:
            numbers = timing.LinkTiming.from_message(message)
        except ValueError as exc:
            logger.warning("ignoring the server's TIMING (%s)", exc)
            return
        self.server_silence_limit_s = numbers.server_silence_limit_s
        logger.debug("server silence limit %g s (ping %g s, %d missed)",
                     self.server_silence_limit_s, numbers.ping_s, numbers.missed)

    async def _heartbeat_loop(self) -> None:
        interval = self.welcome.heartbeat_ms / 1000 or DEFAULT_HEARTBEAT_S
        for seq in itertools.count(1):
            await trio.sleep(interval)
            beat = Heartbeat(seq=seq % 2**32, time_us=time.time_ns() // 1000, running=0)
            try:
                await self.send(beat)
            except ConnectionLost:
                return  # the receive loop notices and reports it
