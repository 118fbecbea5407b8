"""LOTC frames over a trio byte stream (TCP or TLS).

A FramedStream owns one connection. It sends frames through a FrameSender
(lotc/net/sending.py: sent whole, one at a time, under a deadline so a peer that
stops reading is cut off instead of stalling us) and receives them through one of
the strategies of lotc/net/receiving.py (its own socket, `receive_some` for TLS and
test streams, or a ReadHub that reads many sockets from one task). Socket errors
are told apart by one rule (lotc/net/sockio.py).

Errors the caller sees from `receive`:
- PeerClosed: the peer closed its side cleanly (EOF).
- trio.BrokenResourceError: the peer or the network broke the connection.
- trio.ClosedResourceError: we closed it ourselves (another task called aclose).
- ProtocolError: the peer sent bytes that are not LOTC; answer with an ERROR
  frame (see `send_error`) and close.
- RequestTimeout: the peer began a frame and trickles the rest (see
  receiving.BODY_GRACE_S); answer with an ERROR frame and close.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import trio

from lotc.errors import LotcError, error_reply
from lotc.net.receiving import (
    BODY_GRACE_S,
    BODY_MIN_RATE,
    DirectReader,
    HubFeed,
    Inbox,
    PeerClosed,
    SocketReader,
    StreamReader,
)
from lotc.net.sending import DEFAULT_SEND_TIMEOUT_S, FrameSender
from protocol.codec import Frame, encode
from protocol.message_types import DEFAULT_MAX_BODY
from protocol.messages import Message

if TYPE_CHECKING:
    from lotc.net.readhub import QuickHandler, ReadHub

__all__ = [
    "BODY_GRACE_S", "BODY_MIN_RATE", "CLOSE_TIMEOUT_S", "DEFAULT_SEND_TIMEOUT_S",
    "FramedStream", "PeerClosed",
]

logger = logging.getLogger(__name__)

CLOSE_TIMEOUT_S = 1.0  # a goodbye ERROR frame is best effort


class FramedStream:
    def __init__(
        self,
        stream: trio.abc.Stream,
        *,
        peer: str = "?",
        max_body: int = DEFAULT_MAX_BODY,
        send_timeout: float = DEFAULT_SEND_TIMEOUT_S,
        tally: dict[int, int] | None = None,
    ) -> None:
        self.stream = stream
        self.peer = peer
        # Plain TCP is read and written on its socket directly; TLS and test streams
        # only through the stream.
        self._socket = stream.socket if isinstance(stream, trio.SocketStream) else None
        self._inbox = Inbox(max_body, tally)  # tally: frames per type (/metrics)
        self._receiver: DirectReader | HubFeed = (
            SocketReader(self._inbox, peer, self._socket) if self._socket is not None
            else StreamReader(self._inbox, peer, stream))
        self._feed: HubFeed | None = None  # set once a ReadHub reads this stream
        self._sender = FrameSender(stream, self._socket, peer=peer, send_timeout=send_timeout,
                                   abandon=self._abandon_link)

    @property
    def socket(self) -> trio.socket.SocketType | None:
        """The TCP socket, when this is plain TCP (not TLS)."""
        return self._socket

    @property
    def send_timeout(self) -> float:
        return self._sender.send_timeout

    @property
    def bytes_sent(self) -> int:
        return self._sender.bytes_sent

    @property
    def bytes_received(self) -> int:
        return self._inbox.bytes_received

    @property
    def unsent(self) -> int:
        """Bytes of a frame begun by `send_now` that the kernel has not taken yet."""
        return len(self._sender.unsent)

    # Sending (lotc/net/sending.py).

    async def send(self, body: Message, request_id: int = 0, more: bool = False) -> None:
        await self._sender.send_bytes(encode(body, request_id, more))

    async def send_bytes(self, data: bytes, deadline: float | None = None) -> None:
        """Send pre-encoded frames (one or several), under the send deadline (or the
        earlier `deadline`, a trio.current_time() value)."""
        await self._sender.send_bytes(data, deadline)

    def send_now(self, data: bytes) -> bool:
        """Send pre-encoded frames without waiting, for code that cannot await (a ReadHub
        callback). False, and nothing sent, when another send is under way or this is not
        plain TCP. If the kernel takes only part, the rest goes before the next frame."""
        return self._sender.send_now(data)

    async def send_error(self, error: LotcError, request_id: int = 0) -> None:
        """Best-effort ERROR frame; never raises (the connection may be dying)."""
        deadline = trio.current_time() + CLOSE_TIMEOUT_S
        try:
            with trio.move_on_at(deadline):
                await self._sender.send_bytes(encode(error_reply(error), request_id), deadline)
        except (trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError):
            logger.debug("could not send ERROR to %s", self.peer)

    # Receiving (lotc/net/receiving.py).

    async def receive(self) -> Frame:
        """Next frame; see the module docstring for what can be raised."""
        frames = self._inbox.frames
        if not frames:
            await self._receiver.fill()
            self._sender.yielded()  # this task just waited
        return frames.popleft()

    async def receive_within(self, seconds: float) -> Frame:
        """Next frame, or trio.TooSlowError after `seconds`."""
        with trio.fail_after(seconds):
            return await self.receive()

    def read_by_hub(self, hub: ReadHub, quick: QuickHandler) -> HubFeed | None:
        """From now on `hub` reads this stream (ReadHub.attach calls this); None, and
        nothing changed, when this is not plain TCP or its socket is closed."""
        sock = self._socket
        if sock is None or sock.fileno() == -1 or self._feed is not None:
            return None
        self._feed = HubFeed(self._inbox, hub, quick, sock.fileno(), self.peer)
        self._receiver = self._feed
        return self._feed

    # Closing.

    async def _abandon_link(self, why: str) -> None:
        """A frame could not be sent whole: the link cannot be resynchronised."""
        logger.info("closing the link to %s: a frame could not be sent whole (%s)", self.peer, why)
        if self._feed is not None:
            self._feed.detach()
        await trio.aclose_forcefully(self.stream)

    async def aclose(self) -> None:
        if self._feed is not None:  # before the socket closes: its number may be reused at once
            self._feed.detach()
        with trio.CancelScope(shield=True):
            with trio.move_on_after(CLOSE_TIMEOUT_S) as scope:
                await self.stream.aclose()
            if scope.cancelled_caught:
                # A TLS close_notify could not be sent: drop the transport.
                await trio.aclose_forcefully(self.stream)
