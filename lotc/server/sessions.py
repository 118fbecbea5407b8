"""One connected agent, as the controller sees it: send, request, await reply.

The server is the requester on this leg: it allocates request ids, and the
agent's read loop hands every reply frame back here (`deliver`). A request's
replies arrive on a small channel, so multi-frame replies (MORE) and follow
streams (logs -f) use the same path as one-frame replies. A request whose
reader is gone or too slow is dropped rather than allowed to stall the
agent's read loop, which also carries heartbeats for everyone's benefit.
"""
from __future__ import annotations

import itertools
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import trio

from lotc.errors import AgentOffline, RequestTimeout, error_for_code
from lotc.net.framed import FramedStream
from protocol.codec import Frame
from protocol.messages import Cancel, Error, Hello, Message

logger = logging.getLogger(__name__)

REPLY_BUFFER = 256  # frames a slow reader may lag behind before its request is dropped


@dataclass(eq=False)
class AgentSession:
    name: str
    framed: FramedStream
    hello: Hello
    connected_us: int
    last_seen_monotonic: float = field(default_factory=trio.current_time)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _pending: dict[int, trio.MemorySendChannel[Frame]] = field(default_factory=dict)
    closed: bool = False
    labels_heard: bool = False  # AGENT_LABELS came on this connection (see Controller)

    @property
    def address(self) -> str:
        return self.framed.peer

    async def send(self, body: Message, request_id: int = 0) -> None:
        if self.closed:
            raise AgentOffline(f"agent {self.name} is offline")
        try:
            await self.framed.send(body, request_id)
        except (trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError) as exc:
            raise AgentOffline(f"agent {self.name} is offline ({type(exc).__name__})") from None

    @asynccontextmanager
    async def open_request(self, body: Message) -> AsyncIterator[PendingRequest]:
        """Send `body`; yield the handle its reply frames arrive on."""
        request_id = next(self._ids) % 0xFFFFFFFF + 1  # 32-bit, never 0
        send_channel, receive_channel = trio.open_memory_channel[Frame](REPLY_BUFFER)
        self._pending[request_id] = send_channel
        try:
            await self.send(body, request_id)
            yield PendingRequest(self, request_id, receive_channel)
        finally:
            self._pending.pop(request_id, None)
            send_channel.close()

    async def request(self, body: Message, timeout: float) -> Frame:
        """Send `body` and return its (first) reply; raise the agent's error if it sent one."""
        async with self.open_request(body) as pending:
            return await pending.reply(timeout)

    async def cancel(self, request_id: int) -> None:
        await self.send(Cancel(cancel_request_id=request_id))

    def deliver(self, frame: Frame) -> bool:
        """Hand a reply frame to its waiting request; False when nobody waits for it."""
        channel = self._pending.get(frame.request_id)
        if channel is None:
            return False
        try:
            channel.send_nowait(frame)
        except trio.WouldBlock:
            logger.warning("dropping request %d to %s: reader too slow", frame.request_id, self.name)
            self._pending.pop(frame.request_id).close()
        except trio.BrokenResourceError:
            self._pending.pop(frame.request_id, None)
        return True

    def close(self) -> None:
        """Fail every waiting request (they see EndOfChannel) and refuse new sends."""
        self.closed = True
        for channel in self._pending.values():
            channel.close()
        self._pending.clear()


def raise_if_error(frame: Frame) -> None:
    if isinstance(frame.body, Error):
        raise error_for_code(int(frame.body.code), frame.body.message)


@dataclass
class PendingRequest:
    session: AgentSession
    request_id: int
    replies: trio.MemoryReceiveChannel[Frame]

    async def reply(self, timeout: float) -> Frame:
        """Next reply frame within `timeout`; the agent's ERROR is raised as its exception."""
        with trio.move_on_after(timeout):
            try:
                frame = await self.replies.receive()
            except trio.EndOfChannel:
                if self.session.closed:
                    raise AgentOffline(f"agent {self.session.name} disconnected") from None
                # `deliver` dropped this request, the link is fine: say so, not "disconnected".
                raise RequestTimeout(
                    f"reply from agent {self.session.name} dropped: its reader fell "
                    f"{REPLY_BUFFER} frames behind"
                ) from None
            raise_if_error(frame)
            return frame
        raise RequestTimeout(f"agent {self.session.name} did not answer within {timeout:g} s")
