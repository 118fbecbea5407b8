"""How a FramedStream receives: bytes into an Inbox of frames, by one of three strategies.

Theory of operation. Every strategy feeds the same `Inbox` (the sans-I/O FrameDecoder,
which refuses an oversize frame from its header before buffering the body, and the
queue of decoded frames); `fill` returns once the queue holds a frame, or raises how
the connection ended. The owner's `receive` only takes frames from the queue.
- SocketReader: plain TCP read by its owner task, waiting on the socket first and then
  reading once (half the CPU per frame of SocketStream.receive_some).
- StreamReader: TLS and in-memory test streams, through `receive_some`.
- HubFeed: a ReadHub (lotc/net/readhub.py) reads the socket for the owner and queues
  what its `quick` callback does not take; the owner parks until woken. A stream
  handed to a hub stays with its HubFeed: the frames and partial frame the owner had
  read already are in the Inbox they share, so nothing is lost or reordered.
The two readers cut off a peer that begins a frame and trickles the rest
(`DirectReader._body_deadline`): whole-read deadlines do not catch it.

How a connection ends is raised the same way by all three: PeerClosed (clean EOF),
trio.BrokenResourceError, trio.ClosedResourceError (lotc/net/sockio.py), ProtocolError
from the decoder, RequestTimeout for a trickled frame (readers only).
"""
from __future__ import annotations

import math
from collections import deque
from typing import TYPE_CHECKING

import trio

from lotc.errors import RequestTimeout
from lotc.net.sockio import RECEIVE_CHUNK, read_now
from protocol.codec import Frame, FrameDecoder

if TYPE_CHECKING:
    from lotc.net.readhub import QuickHandler, ReadHub

# A frame begun must be finished at a minimum pace: BODY_GRACE_S, plus one second per
# BODY_MIN_RATE bytes received of it (Apache mod_reqtimeout's "body=10,MinRate=...").
BODY_GRACE_S = 10.0
BODY_MIN_RATE = 4096  # bytes/s: a 256 KiB bundle chunk over a 32 kbit/s link still passes


class PeerClosed(Exception):
    """The peer closed the connection cleanly."""


class Inbox:
    """Received bytes decoded into a queue of frames; shared by every strategy of a stream.

    `tally`, when given, counts the frames decoded per message type (the server's
    /metrics: one dict shared by all the connections of a listener).
    """

    __slots__ = ("bytes_received", "decoder", "frames", "tally")

    def __init__(self, max_body: int, tally: dict[int, int] | None = None) -> None:
        self.decoder = FrameDecoder(max_body)
        self.frames: deque[Frame] = deque()
        self.bytes_received = 0
        self.tally = tally

    def decode(self, data: bytes | bytearray) -> list[Frame]:
        """The frames `data` completes (the one place a stream's bytes are decoded)."""
        self.bytes_received += len(data)
        frames = self.decoder.feed(data)
        tally = self.tally
        if tally is not None:
            for frame in frames:
                kind = frame.body.TYPE
                tally[kind] = tally.get(kind, 0) + 1
        return frames


class DirectReader:
    """The owner task reads its own connection; `_read_some` is the subclass's way."""

    def __init__(self, inbox: Inbox, peer: str) -> None:
        self.inbox = inbox
        self.peer = peer
        self._partial_since: float | None = None  # when the frame being received began

    async def _read_some(self) -> bytes | bytearray:
        raise NotImplementedError

    async def fill(self) -> None:
        inbox = self.inbox
        while not inbox.frames:
            deadline = self._body_deadline()
            if deadline == math.inf:  # between frames: no cancel scope on the hot path
                data = await self._read_some()
            else:
                data = await self._read_before(deadline)
            if not data:
                raise PeerClosed(f"{self.peer} closed the connection")
            frames = inbox.decode(data)
            if frames:
                self._partial_since = None  # what is left, if anything, is a new frame
                inbox.frames.extend(frames)

    async def _read_before(self, deadline: float) -> bytes | bytearray:
        with trio.move_on_at(deadline):
            return await self._read_some()
        raise RequestTimeout(
            f"{self.peer} sent {self.inbox.decoder.buffered} bytes of a frame and trickles "
            f"the rest (under {BODY_MIN_RATE} B/s after {BODY_GRACE_S:g} s): cut off")

    def _body_deadline(self) -> float:
        """When the frame being received must be complete (inf between frames).

        Whole-read deadlines do not catch a peer that sends a frame header and
        then a byte a second: every per-frame or idle timeout it meets is long
        (a console may idle for a minute), and its frame may be megabytes.
        """
        held = self.inbox.decoder.buffered
        if not held:
            self._partial_since = None
            return math.inf
        if self._partial_since is None:
            self._partial_since = trio.current_time()
        return self._partial_since + BODY_GRACE_S + held / BODY_MIN_RATE


class StreamReader(DirectReader):
    """TLS and test streams: `receive_some`, which maps its own errors."""

    def __init__(self, inbox: Inbox, peer: str, stream: trio.abc.ReceiveStream) -> None:
        super().__init__(inbox, peer)
        self._stream = stream

    async def _read_some(self) -> bytes | bytearray:
        return await self._stream.receive_some(RECEIVE_CHUNK)


class SocketReader(DirectReader):
    """Plain TCP: SocketStream.receive_some, at about half the CPU per frame.

    A server holding 10,000 agents runs this 10,000 times a second, and each
    time the data has not arrived yet. receive_some first tries recv, which
    fails with BlockingIOError (an exception), then waits for readability, reads,
    and yields to the scheduler once more (a successful trio socket call ends
    with a checkpoint). Here: wait first (the wait is the checkpoint), then read
    once. Errors map as SocketStream maps them (bench.server_load, before/after in
    docs/performance.md "Server").
    """

    def __init__(self, inbox: Inbox, peer: str, sock: trio.socket.SocketType) -> None:
        super().__init__(inbox, peer)
        self._socket = sock

    async def _read_some(self) -> bytes:
        sock = self._socket
        while True:
            await trio.lowlevel.wait_readable(sock)  # ClosedResourceError if we close it
            data = read_now(sock.fileno())
            if data is not None:
                return data
            # woken without data (rare): wait again


class HubFeed:
    """A ReadHub reads the socket; the owner parks in `fill` until frames are queued."""

    def __init__(self, inbox: Inbox, hub: ReadHub, quick: QuickHandler, fd: int,
                 peer: str) -> None:
        self.inbox = inbox
        self.fd = fd
        self.peer = peer
        self._hub: ReadHub | None = hub  # None once the hub no longer reads us
        self._quick = quick
        self._ending: BaseException | None = None  # how the connection ended, for the owner
        self._owner: trio.lowlevel.Task | None = None  # parked in fill, waiting for the hub

    async def fill(self) -> None:
        while not self.inbox.frames:
            await self._wait_for_hub()

    async def _wait_for_hub(self) -> None:
        """Park until the hub has queued frames for us or the connection has ended."""
        if self._ending is not None:
            raise self._ending
        assert self._hub is not None and self._owner is None, "one reader at a time"
        self._hub.resume(self)
        self._owner = trio.lowlevel.current_task()

        def abort(_: object) -> trio.lowlevel.Abort:
            self._owner = None
            return trio.lowlevel.Abort.SUCCEEDED

        await trio.lowlevel.wait_task_rescheduled(abort)

    def detach(self) -> None:
        """The owner closes the stream: stop the hub reading it (before the socket closes,
        as its number may be reused at once)."""
        if self._hub is not None:
            self._hub.detach(self)

    # The ReadHub's side; nothing else calls these.

    def received(self, data: bytes) -> bool:
        """Decode `data`; frames `quick` does not take are queued. True when any are queued."""
        if not data:
            raise PeerClosed(f"{self.peer} closed the connection")
        inbox = self.inbox
        quick = self._quick
        for frame in inbox.decode(data):
            if not quick(frame):
                inbox.frames.append(frame)
        return bool(inbox.frames)

    def wake_owner(self) -> None:
        owner, self._owner = self._owner, None
        if owner is not None:
            trio.lowlevel.reschedule(owner)

    def ended(self, ending: BaseException) -> None:
        """The hub no longer reads us; the owner sees `ending` once the queue is drained."""
        if self._hub is None:
            return
        self._hub = None
        self._ending = ending
        self.wake_owner()
