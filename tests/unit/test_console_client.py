"""The console client and scripted runner against a tiny fake server.

The fake server is the real codec, framing and handshake over a real trio
TCP socket on 127.0.0.1, answering a few requests with canned replies: lists
split over MORE frames, ERROR, RESULTS, an upload, and follow streams that
end only when the client sends CANCEL. The real server is exercised by the
end-to-end tests.
"""
from __future__ import annotations

import functools
import hashlib
import io
import json
import os
import signal
import tarfile
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trio

from admin_console.client import AdminClient
from admin_console.commands import build_registry
from admin_console.commands.base import Context
from admin_console.errors import ConnectionLost
from admin_console.registry import Outcome, parse_line, run_invocation
from admin_console.script import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    Connection,
    Streams,
    lines_of_command_string,
    plan,
    run_script,
)
from lotc import timing
from lotc.errors import AuthFailed, LotcError, RequestTimeout, UnknownAgent
from lotc.net.address import Address
from lotc.net.auth import server_handshake, token_key
from lotc.net.framed import FramedStream, PeerClosed
from protocol.codec import Frame
from protocol.enums import EventKind, ProcessState, Role, StreamKind
from protocol.errors import ErrorCode
from protocol.messages import (
    AgentEntry,
    AgentList,
    AgentResult,
    BundleBegin,
    BundleChunk,
    BundleEnd,
    BundleReady,
    Cancel,
    Error,
    Event,
    EventAck,
    Heartbeat,
    Label,
    LabelList,
    LabelsEntry,
    ListAgents,
    ListBundles,
    ListLabels,
    ListProcesses,
    LogLines,
    Message,
    Ok,
    ProcStart,
    ProcStop,
    QueryDisk,
    QueryEvents,
    QueryLogs,
    Results,
    Timing,
    Token,
    TokenCreate,
    TokenRevoke,
    Welcome,
)

TOKEN = "s3cret-token"
ADMIN = "alice"
DEADLINE_S = 5.0  # every test wait; all of them finish in milliseconds
# The fake server never pings: a silence limit far beyond any test, (10 s + 0.05 s) x 3.
TIMING = Timing(heartbeat_ms=50, ping_ms=10_000, missed=3, silence_limit_ms=60_000)
REGISTRY = build_registry()


@dataclass
class FakeServer:
    """Canned replies; records what the console sent."""

    address: Address = field(default_factory=lambda: Address("127.0.0.1", 0))
    received: list[Frame] = field(default_factory=list)
    heartbeats: int = 0
    chunks: bytearray = field(default_factory=bytearray)
    cancels: list[int] = field(default_factory=list)
    follows: dict[int, trio.Event] = field(default_factory=dict)

    async def handle(self, stream: trio.SocketStream) -> None:
        framed = FramedStream(stream, peer="console")
        try:
            await server_handshake(
                framed, lambda role, name: token_key(TOKEN) if name == ADMIN else None,
                lambda hello: Welcome(server="fake", heartbeat_ms=50, max_body=1 << 22),
                allowed_role=Role.ADMIN, timeout=DEADLINE_S,
                make_timing=lambda hello: TIMING if timing.CAPABILITY in hello.capabilities
                else None)
            async with trio.open_nursery() as nursery:
                await self.serve(framed, nursery)
        except LotcError as exc:
            await framed.send_error(exc)
        except (PeerClosed, trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            await framed.aclose()

    async def serve(self, framed: FramedStream, nursery: trio.Nursery) -> None:
        while True:
            frame = await framed.receive()
            body, rid = frame.body, frame.request_id
            if isinstance(body, Heartbeat):
                self.heartbeats += 1
                continue
            self.received.append(frame)
            if isinstance(body, Cancel):
                self.cancels.append(body.cancel_request_id)
                self.follows[body.cancel_request_id].set()
            elif isinstance(body, (QueryEvents, QueryLogs)):
                self.follows[rid] = trio.Event()
                nursery.start_soon(self.follow, framed, body, rid)
            elif isinstance(body, TokenRevoke):
                await framed.send(Error(code=ErrorCode.TOKEN_REVOKED, message="token revoked"))
                return  # and the connection closes
            elif not isinstance(body, ListBundles):  # ListBundles: never answered
                for reply, more in self.replies(body):
                    unsolicited = isinstance(reply, Heartbeat)
                    await framed.send(reply, 0 if unsolicited else rid, more)

    def replies(self, body: Message) -> list[tuple[Message, bool]]:
        if isinstance(body, ListAgents):
            return [(Heartbeat(seq=1), False),  # unsolicited id 0 in between: ignored
                    (AgentList(agents=(AgentEntry(name="node-1", online=True),)), True),
                    (AgentList(agents=(AgentEntry(name="node-2"),)), False)]
        if isinstance(body, ListLabels):  # `agents` asks for the labels after the agents
            return [(LabelList(agents=(LabelsEntry(agent="node-1", announced=(
                Label(key="role", value="web"),)),)), False)]
        if isinstance(body, ListProcesses):
            return [(Error(code=ErrorCode.UNKNOWN_AGENT, message="no agent matches 'x'"), False)]
        if isinstance(body, ProcStart):
            return [(Results(results=(
                AgentResult(agent="node-1", code=ErrorCode.OK, message="started pid 4242"),
                AgentResult(agent="node-2", code=ErrorCode.UNKNOWN_BUNDLE,
                            message="unknown bundle 'web'"))), False)]
        if isinstance(body, ProcStop):
            return [(Results(results=(AgentResult(agent="node-1", message="stopped"),)), False)]
        if isinstance(body, TokenCreate):
            return [(Token(token="new-token"), False)]
        if isinstance(body, QueryDisk):  # a frame the server sends only to agents
            return [(EventAck(seq=1), False)]
        if isinstance(body, BundleBegin):
            self.begin = body
            return [(BundleReady(offset=0), False)]
        if isinstance(body, BundleChunk):
            assert body.offset == len(self.chunks)
            self.chunks += body.data
            return []
        if isinstance(body, BundleEnd):
            assert hashlib.sha256(self.chunks).digest() == self.begin.sha256
            assert body.size == len(self.chunks) == self.begin.size
            return [(Results(results=(AgentResult(agent="node-1", message="loaded"),)), False)]
        raise AssertionError(f"unexpected {body}")

    async def follow(self, framed: FramedStream, body: QueryEvents | QueryLogs, rid: int) -> None:
        for seq in (1, 2):
            if isinstance(body, QueryEvents):
                item: Message = Event(seq=seq, agent="node-1", time_us=seq * 1_000_000,
                                     kind=EventKind.PROCESS_STATE, process="web",
                                     old_state=ProcessState.STARTING,
                                     new_state=ProcessState.RUNNING, exit_code=-1)
            else:
                item = LogLines(agent="node-1", process="web", stream=StreamKind.STDOUT,
                                lines=(f"line {seq}",))
            await framed.send(item, rid, more=True)
        if body.follow:
            await self.follows[rid].wait()
        await framed.send(Ok(message="end"), rid)


@asynccontextmanager
async def fake_server() -> AsyncIterator[FakeServer]:
    server = FakeServer()
    try:
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(
                functools.partial(trio.serve_tcp, server.handle, 0, host="127.0.0.1"))
            server.address = Address("127.0.0.1", listeners[0].socket.getsockname()[1])
            yield server
            nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:  # the test's own exception, for pytest.raises
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise


@asynccontextmanager
async def connected(token: str = TOKEN) -> AsyncIterator[tuple[FakeServer, AdminClient]]:
    async with fake_server() as server:
        with trio.fail_after(DEADLINE_S):
            async with AdminClient.connect(server.address, token=token, name=ADMIN,
                                           hostname="test") as client:
                yield server, client


# ---------------------------------------------------------------- the client


async def test_wrong_token_is_refused() -> None:
    with pytest.raises(AuthFailed, match="authentication failed"):
        async with connected(token="wrong"):
            pass


async def test_list_split_over_more_frames() -> None:
    async with connected() as (_, client):
        frames = await client.request(ListAgents(pattern="all"))
    assert [f.more for f in frames] == [True, False]
    assert all(isinstance(f.body, AgentList) for f in frames)
    assert [a.name for f in frames for a in f.body.agents] == ["node-1", "node-2"]  # type: ignore[attr-defined]


async def test_error_becomes_the_domain_exception() -> None:
    async with connected() as (_, client):
        with pytest.raises(UnknownAgent, match="no agent matches 'x'"):
            await client.request(ListProcesses(pattern="x"))
        assert len(await client.request(ListAgents())) == 2  # the connection carries on


async def test_follow_stream_ends_when_the_client_cancels() -> None:
    async with connected() as (server, client):
        async with client.stream(QueryEvents(pattern="all", follow=True), follow=True) as reply:
            seen = []
            with trio.fail_after(DEADLINE_S):
                async for frame in reply:
                    seen.append(frame.body)
                    if len(seen) == 2:
                        await reply.cancel()
        assert [type(b) for b in seen] == [Event, Event, Ok]
        assert server.cancels == [reply.request_id]


async def test_heartbeats_are_sent_while_idle() -> None:
    async with connected() as (server, _):
        with trio.fail_after(DEADLINE_S):
            while server.heartbeats < 2:
                await trio.sleep(0.01)


async def test_the_server_silence_limit_comes_from_timing() -> None:
    async with connected() as (_, client):
        with trio.fail_after(DEADLINE_S):
            while client.server_silence_limit_s != pytest.approx(30.15):
                await trio.sleep(0.01)  # TIMING is read by the receive loop, after WELCOME


async def test_a_frame_the_server_may_not_send_a_console_ends_the_connection() -> None:
    async with connected() as (_, client):
        with trio.fail_after(DEADLINE_S), pytest.raises(
                ConnectionLost, match=r"the server sent bad data: the server \(to a console\) "
                                      "may not send EVENT_ACK after WELCOME"):
            await client.request(QueryDisk(pattern="all"))
        assert not client.connected


async def test_request_deadline() -> None:
    async with connected() as (_, client):
        with pytest.raises(RequestTimeout, match="within 0.05 s"):
            await client.request(ListBundles(), timeout=0.05)


async def test_lost_connection_fails_pending_and_later_requests() -> None:
    async with connected() as (_, client):
        with trio.fail_after(DEADLINE_S), pytest.raises(ConnectionLost, match="token revoked"):
            await client.request(TokenRevoke(name=ADMIN))
        assert not client.connected
        with pytest.raises(ConnectionLost):
            await client.request(ListAgents())


# ---------------------------------------------------------------- commands over the client


class Lines(io.StringIO):
    """stdout stand-in that wakes the test when enough lines were printed."""

    def __init__(self, wanted: int, on_enough: Callable[[], None]) -> None:
        super().__init__()
        self.wanted = wanted
        self.on_enough = on_enough

    def write(self, text: str) -> int:
        written = super().write(text)
        if self.wanted and self.getvalue().count("\n") >= self.wanted:
            self.wanted = 0  # once: a second SIGINT would find no receiver
            self.on_enough()
        return written


async def run_one(client: AdminClient, line: str, out: io.StringIO, *, as_json: bool = False,
                  interrupted: Callable[[], Awaitable[None]] | None = None) -> Outcome:
    invocation = parse_line(REGISTRY, line)
    assert invocation is not None
    ctx = Context(client, REGISTRY, json=as_json, out=out, err=io.StringIO())
    if interrupted is not None:
        ctx.interrupted = interrupted
    with trio.fail_after(DEADLINE_S):
        return await run_invocation(ctx, invocation)


async def test_events_follow_command_cancelled_by_interrupt() -> None:
    interrupt = trio.Event()
    out = Lines(2, interrupt.set)
    async with connected() as (server, client):
        outcome = await run_one(client, "events -f", out, interrupted=interrupt.wait)
    assert outcome is Outcome.OK
    assert out.getvalue().splitlines() == [
        "1970-01-01 00:00:01Z  node-1  web  starting -> running",
        "1970-01-01 00:00:02Z  node-1  web  starting -> running",
    ]
    assert len(server.cancels) == 1


async def test_logs_follow_json_lines_cancelled_by_ctrl_c() -> None:
    # the real thing: SIGINT, caught by the command's signal receiver, becomes CANCEL
    out = Lines(2, lambda: os.kill(os.getpid(), signal.SIGINT))
    async with connected() as (server, client):
        outcome = await run_one(client, "logs node-1 web -f", out, as_json=True)
    assert outcome is Outcome.OK
    documents = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [d["lines"] for d in documents] == [["line 1"], ["line 2"]]
    assert len(server.cancels) == 1


async def test_logs_without_follow_end_by_themselves() -> None:
    out = io.StringIO()
    async with connected() as (server, client):
        await run_one(client, "logs node-1 web -n 5", out)
    assert out.getvalue() == "node-1/web | line 1\nnode-1/web | line 2\n"
    assert server.cancels == []


async def test_upload_sends_chunks_under_one_request_id(tmp_path: Path) -> None:
    path = tmp_path / "tool.bin"
    path.write_bytes(os.urandom(600 * 1024))  # three chunks
    out = io.StringIO()
    async with connected() as (server, client):
        outcome = await run_one(client, f"upload all tool {path}", out)
    assert outcome is Outcome.OK
    with tarfile.open(fileobj=io.BytesIO(bytes(server.chunks))) as tar:  # keeps its name
        assert tar.extractfile("tool.bin").read() == path.read_bytes()  # type: ignore[union-attr]
    assert len({f.request_id for f in server.received}) == 1
    assert out.getvalue() == "node-1  ok  loaded\n"


async def test_token_create_command() -> None:
    out = io.StringIO()
    async with connected() as (_, client):
        await run_one(client, "token create --agent node-3", out)
    assert out.getvalue() == "new-token\n"


# ---------------------------------------------------------------- the scripted runner


async def run_commands(text: str, address: Address, token: str = TOKEN,
                       as_json: bool = False) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    connection = Connection(address, token, ADMIN)
    invocations = plan(REGISTRY, lines_of_command_string(text))
    with trio.fail_after(DEADLINE_S):
        status = await run_script(REGISTRY, invocations, connection, json=as_json,
                                  streams=Streams(out, err))
    return status, out.getvalue(), err.getvalue()


async def test_script_runs_in_order_and_stops_at_a_failure() -> None:
    async with fake_server() as server:
        status, out, err = await run_commands("agents; stop node-1 web; ps x; agents",
                                              server.address)
    assert status == EXIT_FAILED
    assert out.count("node-1") == 2 and out.count("node-2") == 1  # the last agents never ran
    assert "lotc console: ps x: no agent matches 'x'" in err


async def test_script_fails_when_an_agent_fails() -> None:
    async with fake_server() as server:
        status, out, err = await run_commands("start all web -- ./web", server.address)
    assert status == EXIT_FAILED
    assert "node-2  FAILED  unknown bundle 'web'" in out
    assert "failed" in err


async def test_script_json_and_quit() -> None:
    async with fake_server() as server:
        status, out, _ = await run_commands("agents; quit; ps x", server.address, as_json=True)
    assert status == EXIT_OK
    assert [a["name"] for a in json.loads(out)["agents"]] == ["node-1", "node-2"]


async def test_script_cannot_connect() -> None:
    async with fake_server() as server:
        status, _, err = await run_commands("agents", server.address, token="wrong")
    assert status == EXIT_USAGE
    assert "cannot connect to 127.0.0.1" in err and "authentication failed" in err
    with trio.socket.socket() as sock:  # a port nobody listens on
        await sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    status, _, err = await run_commands("agents", Address("127.0.0.1", port))
    assert status == EXIT_USAGE and "connection refused" in err


async def test_help_needs_no_server() -> None:
    status, out, _ = await run_commands("help; help ps", Address("127.0.0.1", 1))
    assert status == EXIT_OK
    assert "usage: ps [AGENT [P" in out
