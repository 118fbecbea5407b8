"""One task reads many plain-TCP connections, so a frame that needs no task costs no task switch.

Why: a server holding 10,000 agents receives 10,000 heartbeats a second. Read by
one task per connection, each heartbeat is a trip through trio's scheduler: re-arm
the socket in trio's epoll (a syscall), wake the task, run it, park it again; about
60 us of the server's CPU per heartbeat (bench.server_load, docs/performance.md
"Server"). The hub keeps an epoll of its own, where every attached socket stays
registered, waits in trio for that one descriptor, and on each wake reads every
ready socket in one batch.

Each attached FramedStream brings a `quick` callback that sees every frame first
and says whether it is done with it (a heartbeat is). The other frames are queued
on the stream, and its owner task, parked in `FramedStream.receive`, is woken for
them. While frames wait for their owner the hub stops reading that socket, so a
slow owner still pushes back on its peer through TCP, as a task per connection did.
How a connection ends reaches the owner as the exception `receive` raises: the
same ones, with the same meaning, as when the owner reads the socket itself.

Linux only (epoll; elsewhere `available()` is false and owners read their own
sockets), and plain TCP only: TLS bytes must go through the stream's SSL object.
"""
from __future__ import annotations

import select
from collections.abc import Callable

import trio

from lotc.net.framed import FramedStream, read_now
from protocol.codec import Frame

MAX_BATCH = 64  # sockets read per wake (about 1 ms); other tasks run between batches

QuickHandler = Callable[[Frame], bool]


class ReadHub:
    def __init__(self) -> None:
        self._epoll = select.epoll()
        self._streams: dict[int, FramedStream] = {}
        self._paused: set[int] = set()

    @staticmethod
    def available() -> bool:
        return hasattr(select, "epoll")

    def __len__(self) -> int:
        return len(self._streams)

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Read attached sockets until cancelled; then every owner is told its stream closed."""
        task_status.started()
        try:
            while True:
                await trio.lowlevel.wait_readable(self._epoll.fileno())
                for fd, _events in self._epoll.poll(0, MAX_BATCH):
                    self._read(fd)
        finally:
            for framed in list(self._streams.values()):
                self._end(framed, trio.ClosedResourceError("the server is shutting down"))
            self._epoll.close()

    def attach(self, framed: FramedStream, quick: QuickHandler) -> bool:
        """Read `framed` from now on; False (nothing changed) when it is not plain TCP."""
        sock = framed.socket
        if sock is None or self._epoll.closed:
            return False
        fd = sock.fileno()
        if fd == -1:
            return False
        stale = self._streams.get(fd)
        if stale is not None:  # its socket was closed without detaching: the number is reused
            self._end(stale, trio.ClosedResourceError("this socket was already closed"))
        self._streams[fd] = framed
        framed.hub_attached(self, quick)
        # Level-triggered: a socket left unread (batch full) is reported again next time.
        self._epoll.register(fd, select.EPOLLIN)
        return True

    def detach(self, framed: FramedStream) -> None:
        """Stop reading `framed` (before its socket closes); a parked owner gets ClosedResourceError."""
        self._end(framed, trio.ClosedResourceError("this stream was closed"))

    def resume(self, framed: FramedStream) -> None:
        """The owner has taken every queued frame: read this socket again."""
        fd = framed.hub_fd
        if fd in self._paused and self._streams.get(fd) is framed:
            self._paused.discard(fd)
            self._epoll.modify(fd, select.EPOLLIN)

    def _read(self, fd: int) -> None:
        framed = self._streams.get(fd)
        if framed is None:
            return
        try:
            data = read_now(fd)
            if data is None or not framed.hub_received(data):
                return
        except Exception as exc:  # noqa: BLE001  the connection's ending, not the hub's
            self._end(framed, exc)
            return
        # Frames wait for the owner: stop reading until it has taken them (back-pressure).
        self._paused.add(fd)
        self._epoll.modify(fd, 0)
        framed.hub_wake_owner()

    def _end(self, framed: FramedStream, ending: BaseException) -> None:
        fd = framed.hub_fd
        if self._streams.get(fd) is framed:
            del self._streams[fd]
            self._paused.discard(fd)
            try:
                self._epoll.unregister(fd)
            except (OSError, ValueError):
                pass  # already closed: the kernel dropped it from the epoll set
        framed.hub_ended(ending)
