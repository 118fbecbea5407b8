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
on the stream, and its owner task, parked in `FramedStream.receive` (in the
stream's HubFeed, lotc/net/receiving.py), is woken for them. While frames wait for
their owner the hub stops reading that socket, so a slow owner still pushes back on its peer through TCP, as a task per connection did.
How a connection ends reaches the owner as the exception `receive` raises: the
same ones, with the same meaning, as when the owner reads the socket itself.

Linux only (epoll; elsewhere `available()` is false and owners read their own
sockets), and plain TCP only: TLS bytes must go through the stream's SSL object.
"""
from __future__ import annotations

import select
from collections.abc import Callable
from typing import TYPE_CHECKING

import trio

from lotc.net.sockio import closed_error, read_now
from protocol.codec import Frame

if TYPE_CHECKING:
    from lotc.net.framed import FramedStream
    from lotc.net.receiving import HubFeed

MAX_BATCH = 64  # sockets read per wake (about 1 ms); other tasks run between batches

QuickHandler = Callable[[Frame], bool]


class ReadHub:
    def __init__(self) -> None:
        self._epoll = select.epoll()
        self._feeds: dict[int, HubFeed] = {}
        self._paused: set[int] = set()

    @staticmethod
    def available() -> bool:
        return hasattr(select, "epoll")

    def __len__(self) -> int:
        return len(self._feeds)

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Read attached sockets until cancelled; then every owner is told its stream closed."""
        task_status.started()
        try:
            while True:
                await trio.lowlevel.wait_readable(self._epoll.fileno())
                for fd, _events in self._epoll.poll(0, MAX_BATCH):
                    self._read(fd)
        finally:
            for feed in list(self._feeds.values()):
                self._end(feed, trio.ClosedResourceError("the server is shutting down"))
            self._epoll.close()

    def attach(self, framed: FramedStream, quick: QuickHandler) -> bool:
        """Read `framed` from now on; False (nothing changed) when it is not plain TCP."""
        if self._epoll.closed:
            return False
        feed = framed.read_by_hub(self, quick)
        if feed is None:
            return False
        stale = self._feeds.get(feed.fd)
        if stale is not None:  # its socket was closed without detaching: the number is reused
            self._end(stale, closed_error())
        self._feeds[feed.fd] = feed
        # Level-triggered: a socket left unread (batch full) is reported again next time.
        self._epoll.register(feed.fd, select.EPOLLIN)
        return True

    def detach(self, feed: HubFeed) -> None:
        """Stop reading `feed` (before its socket closes); a parked owner gets ClosedResourceError."""
        self._end(feed, trio.ClosedResourceError("this stream was closed"))

    def resume(self, feed: HubFeed) -> None:
        """The owner has taken every queued frame: read this socket again."""
        fd = feed.fd
        if fd in self._paused and self._feeds.get(fd) is feed:
            self._paused.discard(fd)
            self._epoll.modify(fd, select.EPOLLIN)

    def _read(self, fd: int) -> None:
        feed = self._feeds.get(fd)
        if feed is None:
            return
        try:
            data = read_now(fd)
            if data is None or not feed.received(data):
                return
        except Exception as exc:  # noqa: BLE001  the connection's ending, not the hub's
            self._end(feed, exc)
            return
        # Frames wait for the owner: stop reading until it has taken them (back-pressure).
        self._paused.add(fd)
        self._epoll.modify(fd, 0)
        feed.wake_owner()

    def _end(self, feed: HubFeed, ending: BaseException) -> None:
        fd = feed.fd
        if self._feeds.get(fd) is feed:
            del self._feeds[fd]
            self._paused.discard(fd)
            try:
                self._epoll.unregister(fd)
            except (OSError, ValueError):
                pass  # already closed: the kernel dropped it from the epoll set
        feed.ended(ending)
