"""How a FramedStream sends: three paths, one promise (a frame begun is sent whole).

Theory of operation. Frames arrive here encoded; each goes out by one of three paths:
- at once (`send_bytes`, fast path): plain TCP, a small frame, nobody else sending:
  one write, no lock, no deadline, no trip through the scheduler. A server pinging
  10,000 agents and acknowledging their events sends thousands of these a second, and
  the awaited path costs several scheduler trips each (bench.server_load). Nothing can
  interleave: the lock is free and no await happens before the frame is written whole.
  Every FAST_SENDS_IN_A_ROW-th send in a row goes the awaited way, so a loop of sends
  still yields to other tasks; `yielded` restarts the count when the task has waited
  elsewhere (in receive).
- in turn (`send_bytes`, awaited path): under the send lock, so concurrent senders do
  not interleave bytes, and under the send deadline, so a peer that stops reading is
  cut off instead of stalling us.
- without waiting (`send_now`): for code that cannot await (a ReadHub callback); it
  gives up, sending nothing, when another send is under way.
When the kernel takes only part of a frame, the rest must go before any other frame:
the at-once path finishes it in turn, holding the lock; `send_now` keeps it as
`unsent`, written ahead of the next frame by whichever path comes next.

A frame once begun is finished even if its sender is cancelled (`_finish_frame`);
only the deadline stops it, and then the link is closed, never left holding half a
frame. Socket errors reach the caller as trio's stream errors (lotc/net/sockio.py).
"""
from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import trio

from lotc.net.sockio import write_now

logger = logging.getLogger(__name__)

DEFAULT_SEND_TIMEOUT_S = 10.0
FAST_SEND_MAX = 4096  # frames up to this size may be written at once
FAST_SENDS_IN_A_ROW = 16  # ...this many times in a row; then one awaited send

# Closes the link after a frame could not be sent whole (the argument says why).
Abandon = Callable[[str], Awaitable[None]]


class FrameSender:
    def __init__(self, stream: trio.abc.Stream, socket: trio.socket.SocketType | None, *,
                 peer: str, send_timeout: float, abandon: Abandon) -> None:
        self.stream = stream
        self.peer = peer
        self.send_timeout = send_timeout
        self._socket = socket  # set for plain TCP: the two paths that write it directly
        self._abandon = abandon
        self._lock = trio.Lock()
        self._fast_sends = 0  # sends in a row that took the at-once path
        self.unsent = b""  # the tail of a frame `send_now` could not write whole
        self.bytes_sent = 0

    def yielded(self) -> None:
        """The sending task has just waited elsewhere: the at-once path may run again."""
        self._fast_sends = 0

    async def send_bytes(self, data: bytes, deadline: float | None = None) -> None:
        """Send pre-encoded frames (one or several), under the send deadline (or the
        earlier `deadline`, a trio.current_time() value)."""
        sock = self._socket
        if (sock is not None and len(data) <= FAST_SEND_MAX and not self.unsent
                and self._fast_sends < FAST_SENDS_IN_A_ROW and not self._lock.locked()):
            sent = write_now(sock.fileno(), data)
            self.bytes_sent += sent
            if sent == len(data):
                self._fast_sends += 1
                return
            await self._send_rest(data[sent:], deadline)
            return
        self._fast_sends = 0
        await self._send_in_turn(data, deadline)

    async def _send_rest(self, rest: bytes, deadline: float | None) -> None:
        """The kernel took part of a frame sent at once: the rest goes next, before anyone's."""
        self._lock.acquire_nowait()  # free: the at-once path checked, and nothing awaited since
        try:
            await self._finish_frame(rest, deadline)
        finally:
            self._lock.release()

    async def _send_in_turn(self, data: bytes, deadline: float | None) -> None:
        async with self._lock:  # cancellable: nothing of this frame is sent yet
            if self.unsent:  # it goes first: it is the tail of a frame already begun
                data, self.unsent = self.unsent + data, b""
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
                await self._abandon("the send failed")
                raise
        if scope.cancelled_caught:
            await self._abandon("the send deadline passed")
            raise trio.TooSlowError(f"{self.peer} did not read a frame in time; link closed")
        self.bytes_sent += len(data)

    def send_now(self, data: bytes) -> bool:
        """Send pre-encoded frames without waiting. False, and nothing of `data` sent, when
        another send is under way or this is not plain TCP. If the kernel takes only part,
        the rest goes before the next frame."""
        sock = self._socket
        if sock is None or self._lock.locked():
            return False
        fd = sock.fileno()
        if self.unsent:
            sent = write_now(fd, self.unsent)
            self.unsent = self.unsent[sent:]
            self.bytes_sent += sent
            if self.unsent:
                return False
        sent = write_now(fd, data)
        self.bytes_sent += sent
        self.unsent = data[sent:]
        return True
