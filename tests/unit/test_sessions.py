"""AgentSession: requests to one agent, replies matched by request id, clear failures."""
from __future__ import annotations

import itertools
import logging
from collections.abc import Callable

import pytest
import trio
import trio.testing

from lotc.errors import AgentOffline, RequestTimeout, UnknownProcess
from lotc.net.framed import FramedStream, PeerClosed
from lotc.server.sessions import REPLY_BUFFER, AgentSession
from protocol.codec import Frame
from protocol.enums import Role
from protocol.errors import ErrorCode
from protocol.messages import Error, Hello, ListProcesses, LogLines, Message, Ok, ProcStop

DEADLINE_S = 5.0


class Link:
    """A session on the server end; on the agent end, a scripted responder."""

    def __init__(self, answer: Callable[[Frame], list[Message]] | None = None) -> None:
        server_end, agent_end = trio.testing.memory_stream_pair()
        self.session = AgentSession("web-1", FramedStream(server_end, peer="mem"),
                                    Hello(role=Role.AGENT, name="web-1"), connected_us=1)
        self.agent = FramedStream(agent_end, peer="server")
        self.answer = answer or (lambda frame: [Ok(message=f"did {frame.request_id}")])
        self.seen: list[Frame] = []
        self.undelivered: list[Frame] = []

    async def run_agent(self) -> None:
        try:
            while True:
                frame = await self.agent.receive()
                self.seen.append(frame)
                replies = self.answer(frame)
                for index, reply in enumerate(replies):
                    await self.agent.send(reply, frame.request_id, more=index < len(replies) - 1)
        except (PeerClosed, trio.ClosedResourceError, trio.BrokenResourceError):
            pass

    async def run_server_reader(self) -> None:
        """What agent_server's read loop does with replies."""
        try:
            while True:
                frame = await self.session.framed.receive()
                if not self.session.deliver(frame):
                    self.undelivered.append(frame)
        except (PeerClosed, trio.ClosedResourceError, trio.BrokenResourceError):
            pass

    def start(self, nursery: trio.Nursery) -> Link:
        nursery.start_soon(self.run_agent)
        nursery.start_soon(self.run_server_reader)
        return self


async def test_request_gets_its_own_reply(nursery: trio.Nursery) -> None:
    link = Link().start(nursery)
    results = {}

    async def ask(i: int) -> None:
        results[i] = (await link.session.request(ProcStop(name=f"p{i}"), DEADLINE_S)).body

    async with trio.open_nursery() as many:
        for i in range(20):
            many.start_soon(ask, i)
    ids = [f.request_id for f in link.seen]
    assert len(set(ids)) == 20 and 0 not in ids
    by_name = {f.body.name: f.request_id for f in link.seen}
    assert all(results[i] == Ok(message=f"did {by_name[f'p{i}']}") for i in range(20))
    assert link.session._pending == {}  # nothing left behind


async def test_request_ids_wrap_and_are_never_zero(nursery: trio.Nursery) -> None:
    link = Link().start(nursery)
    link.session._ids = itertools.count(0xFFFFFFFE)
    for _ in range(3):
        await link.session.request(ProcStop(name="p"), DEADLINE_S)
    assert [f.request_id for f in link.seen] == [0xFFFFFFFF, 1, 2]


async def test_agent_error_is_raised_as_its_class(nursery: trio.Nursery) -> None:
    link = Link(lambda frame: [Error(code=ErrorCode.UNKNOWN_PROCESS, message="no p")])
    link.start(nursery)
    with pytest.raises(UnknownProcess, match="no p"):
        await link.session.request(ProcStop(name="p"), DEADLINE_S)


async def test_multi_frame_reply(nursery: trio.Nursery) -> None:
    link = Link(lambda frame: [LogLines(lines=("a",)), LogLines(lines=("b",)), Ok()])
    link.start(nursery)
    async with link.session.open_request(ListProcesses()) as pending:
        frames = [await pending.reply(DEADLINE_S) for _ in range(3)]
    assert [f.more for f in frames] == [True, True, False]
    assert isinstance(frames[2].body, Ok)


async def test_no_reply_is_a_request_timeout(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    link = Link(lambda frame: []).start(nursery)
    start = trio.current_time()
    with pytest.raises(RequestTimeout, match="did not answer within 15 s"):
        await link.session.request(ProcStop(name="p"), 15.0)
    assert trio.current_time() - start == pytest.approx(15.0)
    assert link.session._pending == {}
    # A late reply finds nobody waiting: dropped, not misdelivered.
    await link.agent.send(Ok(), link.seen[0].request_id)
    await trio.testing.wait_all_tasks_blocked()
    assert [f.request_id for f in link.undelivered] == [link.seen[0].request_id]


async def test_close_fails_pending_requests_and_refuses_new_ones(nursery: trio.Nursery) -> None:
    link = Link(lambda frame: []).start(nursery)
    outcome: list[BaseException] = []

    async def waiter() -> None:
        try:
            await link.session.request(ProcStop(name="p"), 60.0)
        except AgentOffline as exc:
            outcome.append(exc)

    async with trio.open_nursery() as inner:
        inner.start_soon(waiter)
        await trio.testing.wait_all_tasks_blocked()
        assert len(link.seen) == 1
        link.session.close()
    assert [str(e) for e in outcome] == ["agent web-1 disconnected"]
    with pytest.raises(AgentOffline, match="is offline"):
        await link.session.request(ProcStop(name="p"), 1.0)
    with pytest.raises(AgentOffline):
        await link.session.send(ProcStop(name="p"))


async def test_send_on_a_broken_link_is_agent_offline() -> None:
    link = Link()
    await link.agent.aclose()
    await link.session.framed.aclose()
    with pytest.raises(AgentOffline, match="ClosedResourceError"):
        await link.session.send(ProcStop(name="p"))


async def test_a_slow_reader_is_dropped_not_waited_for(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    lines = [LogLines(lines=(str(i),)) for i in range(REPLY_BUFFER + 10)]
    link = Link(lambda frame: lines if isinstance(frame.body, ListProcesses) else [Ok()])
    link.start(nursery)
    async with link.session.open_request(ListProcesses()) as pending:
        # Nobody reads; the link's reader must still get through every frame at once.
        await trio.testing.wait_all_tasks_blocked()
        assert len(link.undelivered) == 9  # after the drop, the rest finds nobody
        assert pending.request_id not in link.session._pending
        got = [await pending.reply(DEADLINE_S) for _ in range(REPLY_BUFFER)]
        assert [f.body.lines for f in got] == [(str(i),) for i in range(REPLY_BUFFER)]
        with pytest.raises(RequestTimeout, match="dropped: its reader fell 256 frames behind"):
            await pending.reply(DEADLINE_S)
    assert [r.getMessage() for r in caplog.records] == [
        f"dropping request {pending.request_id} to web-1: reader too slow"]
    # The link itself is fine.
    assert (await link.session.request(ProcStop(name="p"), DEADLINE_S)).body == Ok()


async def test_deliver_without_a_request_says_so() -> None:
    link = Link()
    assert link.session.deliver(Frame(Ok(), request_id=99)) is False
