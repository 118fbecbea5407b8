"""LOTC frames over a trio byte stream (TCP or TLS).

A FramedStream owns one connection: it encodes and sends frames one at a time
(a lock keeps concurrent senders from interleaving bytes, and every send has a
deadline so a peer that stops reading is cut off instead of stalling us), and
it decodes received bytes into frames with the sans-I/O FrameDecoder, which
refuses an oversize frame from its header before buffering the body.

Errors the caller sees from `receive`:
- PeerClosed: the peer closed its side cleanly (EOF).
- trio.BrokenResourceError: the peer or the network broke the connection.
- trio.ClosedResourceError: we closed it ourselves (another task called aclose).
- ProtocolError: the peer sent bytes that are not LOTC; answer with an ERROR
  frame (see `send_error`) and close.
"""
from __future__ import annotations

import errno
import logging
import os
from collections import deque

import trio

from protocol.codec import Frame, FrameDecoder, encode
from protocol.errors import LotcError
from protocol.messages import Error, Message
from protocol.spec import DEFAULT_MAX_BODY

logger = logging.getLogger(__name__)

RECEIVE_CHUNK = 64 * 1024
DEFAULT_SEND_TIMEOUT_S = 10.0
CLOSE_TIMEOUT_S = 1.0  # a goodbye ERROR frame is best effort
FAST_SEND_MAX = 4096  # frames up to this size may be written at once (see send_bytes)
FAST_SENDS_IN_A_ROW = 16  # ...this many times in a row; then one awaited send


class PeerClosed(Exception):
    """The peer closed the connection cleanly."""


class FramedStream:
    def __init__(
        self,
        stream: trio.abc.Stream,
        *,
        peer: str = "?",
        max_body: int = DEFAULT_MAX_BODY,
        send_timeout: float = DEFAULT_SEND_TIMEOUT_S,
    ) -> None:
        self.stream = stream
        self.peer = peer
        self.send_timeout = send_timeout
        self._decoder = FrameDecoder(max_body)
        # Plain TCP is read by `_read_socket`; TLS and test streams by receive_some.
        self._socket = stream.socket if isinstance(stream, trio.SocketStream) else None
        self._received: deque[Frame] = deque()
        self._send_lock = trio.Lock()
        self._fast_sends = 0  # sends in a row that took the fast path (see send_bytes)
        self.bytes_sent = 0
        self.bytes_received = 0

    async def send(self, body: Message, request_id: int = 0, more: bool = False) -> None:
        await self.send_bytes(encode(body, request_id, more))

    async def send_bytes(self, data: bytes) -> None:
        """Send pre-encoded frames (one or several), under the send deadline."""
        if (self._socket is not None and len(data) <= FAST_SEND_MAX
                and self._fast_sends < FAST_SENDS_IN_A_ROW and not self._send_lock.locked()):
            # Fast path (plain TCP, a small frame, nobody else sending): one write, no
            # lock, no deadline, no trip through the scheduler. A server pinging 10,000
            # agents and acknowledging their events sends thousands of these a second;
            # the awaited path costs several scheduler trips each (bench.server_load).
            # Nothing can interleave: the lock is free and no await happens before the
            # frame is written whole. Every FAST_SENDS_IN_A_ROW-th send in a row goes
            # the awaited way, so a loop of sends still yields to other tasks.
            sent = self._write_now(self._socket, data)
            self.bytes_sent += sent
            if sent == len(data):
                self._fast_sends += 1
                return
            # The kernel took part of it: the rest goes next, before anyone else's.
            self._send_lock.acquire_nowait()
            try:
                with trio.fail_after(self.send_timeout):
                    await self.stream.send_all(data[sent:])
            finally:
                self._send_lock.release()
            self.bytes_sent += len(data) - sent
            return
        self._fast_sends = 0
        async with self._send_lock:
            with trio.fail_after(self.send_timeout):
                await self.stream.send_all(data)
        self.bytes_sent += len(data)

    @staticmethod
    def _write_now(sock: trio.socket.SocketType, data: bytes) -> int:
        """Bytes of `data` written without waiting; errors as SocketStream maps them."""
        fd = sock.fileno()
        if fd == -1:
            raise trio.ClosedResourceError("this socket was already closed")
        try:
            return os.write(fd, data)
        except BlockingIOError:
            return 0
        except OSError as exc:
            if exc.errno in (errno.EBADF, errno.ENOTSOCK):
                raise trio.ClosedResourceError("this socket was already closed") from None
            raise trio.BrokenResourceError(f"socket connection broken: {exc}") from exc

    async def send_error(self, error: LotcError, request_id: int = 0) -> None:
        """Best-effort ERROR frame; never raises (the connection may be dying)."""
        try:
            with trio.move_on_after(CLOSE_TIMEOUT_S):
                await self.send(Error(code=error.code, message=str(error)[:1000]), request_id)
        except (trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError):
            logger.debug("could not send ERROR to %s", self.peer)

    async def receive(self) -> Frame:
        """Next frame; see the module docstring for what can be raised."""
        while not self._received:
            data: bytes | bytearray
            if self._socket is not None:
                data = await self._read_socket(self._socket)
            else:
                data = await self.stream.receive_some(RECEIVE_CHUNK)
            self._fast_sends = 0  # this task just waited: it has yielded
            if not data:
                raise PeerClosed(f"{self.peer} closed the connection")
            self.bytes_received += len(data)
            self._received.extend(self._decoder.feed(data))
        return self._received.popleft()

    @staticmethod
    async def _read_socket(sock: trio.socket.SocketType) -> bytes:
        """SocketStream.receive_some, at about half the CPU per frame.

        A server holding 10,000 agents runs this 10,000 times a second, and each
        time the data has not arrived yet. receive_some first tries recv, which
        fails with BlockingIOError (an exception), then waits for readability, reads,
        and yields to the scheduler once more (a successful trio socket call ends
        with a checkpoint). Here: wait first (the wait is the checkpoint), then read
        once. Errors map as SocketStream maps them (bench.server_load, before/after in
        docs/performance.md "Server").
        """
        while True:
            await trio.lowlevel.wait_readable(sock)  # ClosedResourceError if we close it
            fd = sock.fileno()
            if fd == -1:
                raise trio.ClosedResourceError("this socket was already closed")
            try:
                return os.read(fd, RECEIVE_CHUNK)
            except BlockingIOError:
                continue  # woken without data (rare): wait again
            except OSError as exc:
                if exc.errno in (errno.EBADF, errno.ENOTSOCK):
                    raise trio.ClosedResourceError("this socket was already closed") from None
                raise trio.BrokenResourceError(f"socket connection broken: {exc}") from exc

    async def receive_within(self, seconds: float) -> Frame:
        """Next frame, or trio.TooSlowError after `seconds`."""
        with trio.fail_after(seconds):
            return await self.receive()

    async def aclose(self) -> None:
        with trio.CancelScope(shield=True):
            with trio.move_on_after(CLOSE_TIMEOUT_S) as scope:
                await self.stream.aclose()
            if scope.cancelled_caught:
                # A TLS close_notify could not be sent: drop the transport.
                await trio.aclose_forcefully(self.stream)
