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
- RequestTimeout: the peer began a frame and trickles the rest (see
  `_body_deadline`); answer with an ERROR frame and close.
"""
from __future__ import annotations

import errno
import logging
import math
import os
from collections import deque
from typing import TYPE_CHECKING

import trio

from lotc.errors import LotcError, RequestTimeout, error_reply
from protocol.codec import Frame, FrameDecoder, encode
from protocol.messages import Message
from protocol.spec import DEFAULT_MAX_BODY

if TYPE_CHECKING:
    from lotc.net.readhub import QuickHandler, ReadHub

logger = logging.getLogger(__name__)

RECEIVE_CHUNK = 64 * 1024
DEFAULT_SEND_TIMEOUT_S = 10.0
CLOSE_TIMEOUT_S = 1.0  # a goodbye ERROR frame is best effort
FAST_SEND_MAX = 4096  # frames up to this size may be written at once (see send_bytes)
FAST_SENDS_IN_A_ROW = 16  # ...this many times in a row; then one awaited send
# A frame begun must be finished at a minimum pace: BODY_GRACE_S, plus one second per
# BODY_MIN_RATE bytes received of it (Apache mod_reqtimeout's "body=10,MinRate=...").
BODY_GRACE_S = 10.0
BODY_MIN_RATE = 4096  # bytes/s: a 256 KiB bundle chunk over a 32 kbit/s link still passes


class PeerClosed(Exception):
    """The peer closed the connection cleanly."""


def read_now(fd: int) -> bytes | None:
    """What the socket `fd` holds (b"" at EOF), or None if nothing yet; errors as
    trio's SocketStream maps them."""
    if fd == -1:
        raise trio.ClosedResourceError("this socket was already closed")
    try:
        return os.read(fd, RECEIVE_CHUNK)
    except BlockingIOError:
        return None
    except OSError as exc:
        if exc.errno in (errno.EBADF, errno.ENOTSOCK):
            raise trio.ClosedResourceError("this socket was already closed") from None
        raise trio.BrokenResourceError(f"socket connection broken: {exc}") from exc


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
        self._unsent = b""  # the tail of a frame `send_now` could not write whole
        # Set while a ReadHub reads this stream for its owner (lotc/net/readhub.py).
        self._hub: ReadHub | None = None
        self._quick: QuickHandler | None = None
        self.hub_fd = -1
        self._hub_ending: BaseException | None = None
        self._owner: trio.lowlevel.Task | None = None  # parked in receive, waiting for the hub
        self.bytes_sent = 0
        self.bytes_received = 0
        self._partial_since: float | None = None  # when the frame being received began

    @property
    def socket(self) -> trio.socket.SocketType | None:
        """The TCP socket, when this is plain TCP (not TLS)."""
        return self._socket

    async def send(self, body: Message, request_id: int = 0, more: bool = False) -> None:
        await self.send_bytes(encode(body, request_id, more))

    async def send_bytes(self, data: bytes, deadline: float | None = None) -> None:
        """Send pre-encoded frames (one or several), under the send deadline (or the
        earlier `deadline`, a trio.current_time() value)."""
        if (self._socket is not None and len(data) <= FAST_SEND_MAX and not self._unsent
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
                await self._finish_frame(data[sent:], deadline)
            finally:
                self._send_lock.release()
            return
        self._fast_sends = 0
        async with self._send_lock:  # cancellable: nothing of this frame is sent yet
            if self._unsent:  # it goes first: it is the tail of a frame already begun
                data, self._unsent = self._unsent + data, b""
            await trio.lowlevel.checkpoint_if_cancelled()
            await self._finish_frame(data, deadline)

    async def _finish_frame(self, data: bytes, deadline: float | None) -> None:
        """Send `data` whole, or close the link: never leave half a frame on it.

        A cancelled send_all may have written any part of the frame, and the peer
        would then read our next frames as the rest of its body (a console killed
        mid-upload did that to agent links, issue 14 item 13). So the send is shielded
        from cancellation; only the send deadline ends it, and then the link is
        closed, since it can no longer be resynchronised. A cancellation that
        arrived meanwhile is delivered at the caller's next checkpoint.
        """
        with trio.CancelScope(shield=True) as scope:
            scope.deadline = trio.current_time() + self.send_timeout
            if deadline is not None:
                scope.deadline = min(scope.deadline, deadline)
            try:
                await self.stream.send_all(data)
            except BaseException:
                await self._abandon_link("the send failed")
                raise
        if scope.cancelled_caught:
            await self._abandon_link("the send deadline passed")
            raise trio.TooSlowError(f"{self.peer} did not read a frame in time; link closed")
        self.bytes_sent += len(data)

    async def _abandon_link(self, why: str) -> None:
        logger.info("closing the link to %s: a frame could not be sent whole (%s)", self.peer, why)
        if self._hub is not None:
            self._hub.detach(self)
        await trio.aclose_forcefully(self.stream)

    def send_now(self, data: bytes) -> bool:
        """Send pre-encoded frames without waiting, for code that cannot await (a ReadHub
        callback). False, and nothing sent, when another send is under way or this is not
        plain TCP. If the kernel takes only part, the rest goes before the next frame."""
        sock = self._socket
        if sock is None or self._send_lock.locked():
            return False
        if self._unsent:
            sent = self._write_now(sock, self._unsent)
            self._unsent = self._unsent[sent:]
            self.bytes_sent += sent
            if self._unsent:
                return False
        sent = self._write_now(sock, data)
        self.bytes_sent += sent
        self._unsent = data[sent:]
        return True

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
        deadline = trio.current_time() + CLOSE_TIMEOUT_S
        try:
            with trio.move_on_at(deadline):
                await self.send_bytes(encode(error_reply(error), request_id), deadline)
        except (trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError):
            logger.debug("could not send ERROR to %s", self.peer)

    async def receive(self) -> Frame:
        """Next frame; see the module docstring for what can be raised."""
        while not self._received:
            if self._hub is not None or self._hub_ending is not None:
                await self._wait_for_hub()
                continue
            deadline = self._body_deadline()
            if deadline == math.inf:  # between frames: no cancel scope on the hot path
                data = await self._read_some()
            else:
                data = b""
                with trio.move_on_at(deadline) as scope:
                    data = await self._read_some()
                if scope.cancelled_caught:
                    raise RequestTimeout(
                        f"{self.peer} sent {self._decoder.buffered} bytes of a frame and "
                        f"trickles the rest (under {BODY_MIN_RATE} B/s after "
                        f"{BODY_GRACE_S:g} s): cut off")
            self._fast_sends = 0  # this task just waited: it has yielded
            if not data:
                raise PeerClosed(f"{self.peer} closed the connection")
            self.bytes_received += len(data)
            frames = self._decoder.feed(data)
            if frames:
                self._partial_since = None  # what is left, if anything, is a new frame
            self._received.extend(frames)
        return self._received.popleft()

    async def _read_some(self) -> bytes | bytearray:
        if self._socket is not None:
            return await self._read_socket(self._socket)
        return await self.stream.receive_some(RECEIVE_CHUNK)

    def _body_deadline(self) -> float:
        """When the frame being received must be complete (inf between frames).

        Whole-read deadlines do not catch a peer that sends a frame header and
        then a byte a second: every per-frame or idle timeout it meets is long
        (a console may idle for a minute), and its frame may be megabytes.
        """
        held = self._decoder.buffered
        if not held:
            self._partial_since = None
            return math.inf
        if self._partial_since is None:
            self._partial_since = trio.current_time()
        return self._partial_since + BODY_GRACE_S + held / BODY_MIN_RATE

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
            data = read_now(sock.fileno())
            if data is not None:
                return data
            # woken without data (rare): wait again

    async def _wait_for_hub(self) -> None:
        """Park until the hub has queued frames for us or the connection has ended."""
        if self._hub_ending is not None:
            raise self._hub_ending
        assert self._hub is not None and self._owner is None, "one reader at a time"
        self._hub.resume(self)
        self._owner = trio.lowlevel.current_task()

        def abort(_: object) -> trio.lowlevel.Abort:
            self._owner = None
            return trio.lowlevel.Abort.SUCCEEDED

        await trio.lowlevel.wait_task_rescheduled(abort)
        self._fast_sends = 0  # this task just waited: it has yielded

    # The ReadHub's side (lotc/net/readhub.py); nothing else calls these.

    def hub_attached(self, hub: ReadHub, quick: QuickHandler) -> None:
        assert self._socket is not None
        self._hub, self._quick, self.hub_fd = hub, quick, self._socket.fileno()

    def hub_received(self, data: bytes) -> bool:
        """Decode `data`; frames `quick` does not take are queued. True when any were."""
        if not data:
            raise PeerClosed(f"{self.peer} closed the connection")
        self.bytes_received += len(data)
        quick = self._quick
        assert quick is not None
        for frame in self._decoder.feed(data):
            if not quick(frame):
                self._received.append(frame)
        return bool(self._received)

    def hub_wake_owner(self) -> None:
        owner, self._owner = self._owner, None
        if owner is not None:
            trio.lowlevel.reschedule(owner)

    def hub_ended(self, ending: BaseException) -> None:
        """The hub no longer reads us; the owner sees `ending` once the queue is drained."""
        if self._hub is None:
            return
        self._hub = None
        self._hub_ending = ending
        self.hub_wake_owner()

    async def receive_within(self, seconds: float) -> Frame:
        """Next frame, or trio.TooSlowError after `seconds`."""
        with trio.fail_after(seconds):
            return await self.receive()

    async def aclose(self) -> None:
        if self._hub is not None:  # before the socket closes: its number may be reused at once
            self._hub.detach(self)
        with trio.CancelScope(shield=True):
            with trio.move_on_after(CLOSE_TIMEOUT_S) as scope:
                await self.stream.aclose()
            if scope.cancelled_caught:
                # A TLS close_notify could not be sent: drop the transport.
                await trio.aclose_forcefully(self.stream)
