"""Helpers for the server tests: a controller on a real model, scripted fake agents.

A fake agent is the real codec, framing and handshake over
trio.testing.memory_stream_pair, with the server's real `handle_agent` on
the other end (so replies reach the controller by the path they take in
production), answering requests from a small table that a test can
override. No sockets, no sleeps: waits poll under deadlines.

Import the fixtures into a test module with
`from tests.server_helpers import ctl_fixture, model_fixture  # noqa: F401`.
"""
from __future__ import annotations

import hashlib
import itertools
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from lotc.agent.app import AgentConfig, serve_agent
from lotc.agent.connection import LinkConfig
from lotc.errors import LotcError
from lotc.net.address import Address
from lotc.net.auth import client_handshake
from lotc.net.framed import FramedStream, PeerClosed
from lotc.server.admin_server import handle_admin
from lotc.server.agent_server import handle_agent
from lotc.server.app import BoundAddresses, serve_server
from lotc.server.config import ServerConfig
from lotc.server.controller import Controller
from lotc.server.model import Model
from protocol.codec import Frame
from protocol.enums import BundleKind, Role
from protocol.messages import (
    AgentState,
    BundleBegin,
    BundleChunk,
    BundleEnd,
    BundleReady,
    BundleRemove,
    Error,
    EventAck,
    Heartbeat,
    ListProcesses,
    Message,
    Ok,
    ProcKill,
    ProcRemove,
    ProcRestart,
    ProcResume,
    ProcStart,
    ProcStop,
    ProcTerminate,
)

DEADLINE_S = 5.0  # every wait in these tests; they all finish in milliseconds


async def wait_until(predicate: Callable[[], Any], timeout: float = DEADLINE_S) -> Any:
    """Poll `predicate` until it is true; fail the test after `timeout` seconds."""
    with trio.move_on_after(timeout):
        while True:
            value = predicate()
            if value:
                return value
            await trio.sleep(0.001)
    raise AssertionError(f"condition not met within {timeout} s: {predicate}")


class FakeClock:
    """The controller's wall clock (UTC microseconds), moved by hand."""

    def __init__(self, start_us: int = 1_700_000_000_000_000) -> None:
        self.now = start_us

    def __call__(self) -> int:
        return self.now

    def advance(self, us: int) -> int:
        self.now += us
        return self.now


def make_config(tmp_path: Path, **overrides: Any) -> ServerConfig:
    return ServerConfig(db_path=tmp_path / "lotc.db", **overrides)


@pytest.fixture(name="model")
def model_fixture(tmp_path: Path) -> Any:
    m = Model(tmp_path / "lotc.db")
    yield m
    m.close()


@pytest.fixture(name="wall")
def wall_fixture() -> FakeClock:
    return FakeClock()


@pytest.fixture(name="ctl")
def ctl_fixture(model: Model, tmp_path: Path, wall: FakeClock) -> Controller:
    return Controller(model, make_config(tmp_path), now_us=wall)


Answer = Callable[[Frame], "Message | None"]


def _ok(frame: Frame) -> Message:
    return Ok(message=f"agent did {type(frame.body).__name__}")


@dataclass
class FakeAgent:
    """The agent end of one connection: records what it gets, answers from `answers`."""

    name: str
    framed: FramedStream
    state: AgentState = field(default_factory=AgentState)
    received: list[Frame] = field(default_factory=list)
    acks: list[int] = field(default_factory=list)
    bundle_bytes: dict[str, bytearray] = field(default_factory=dict)
    ready_offset: int = 0  # what BUNDLE_READY says the agent already holds
    answers: dict[type, Answer] = field(default_factory=dict)
    _uploads: dict[int, str] = field(default_factory=dict)
    closed: trio.Event = field(default_factory=trio.Event)

    def __post_init__(self) -> None:
        defaults: dict[type, Answer] = {
            t: _ok for t in (ProcStart, ProcStop, ProcResume, ProcTerminate, ProcKill,
                             ProcRestart, ProcRemove, BundleRemove)
        }
        defaults[BundleBegin] = self._begin
        defaults[BundleChunk] = self._chunk
        defaults[BundleEnd] = lambda frame: Ok(message="bundle stored")
        defaults[ListProcesses] = lambda frame: self.state
        defaults.update(self.answers)
        self.answers = defaults

    def _begin(self, frame: Frame) -> Message:
        self._uploads[frame.request_id] = frame.body.name
        self.bundle_bytes[frame.body.name] = bytearray()
        return BundleReady(offset=self.ready_offset)

    def _chunk(self, frame: Frame) -> None:
        self.bundle_bytes[self._uploads[frame.request_id]] += frame.body.data

    def of_type(self, cls: type) -> list[Message]:
        return [f.body for f in self.received if isinstance(f.body, cls)]

    async def send(self, body: Message, request_id: int = 0) -> None:
        await self.framed.send(body, request_id)

    async def run(self) -> None:
        try:
            while True:
                frame = await self.framed.receive()
                if isinstance(frame.body, Heartbeat):
                    continue
                if isinstance(frame.body, EventAck):
                    self.acks.append(frame.body.seq)
                    continue
                self.received.append(frame)
                answer = self.answers.get(type(frame.body))
                reply = answer(frame) if answer is not None else None
                if reply is not None:
                    await self.framed.send(reply, frame.request_id)
        except (PeerClosed, trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            self.closed.set()

    async def disconnect(self) -> None:
        await self.framed.aclose()


async def _guarded(handler: Callable[[Controller, FramedStream], Any], ctl: Controller,
                   framed: FramedStream) -> None:
    """What lotc.net.transport.serve does around a handler: ERROR for LotcError, close."""
    try:
        await handler(ctl, framed)
    except Exception as exc:  # noqa: BLE001 - mirrors serve(): a connection never leaks out
        from lotc.net.endings import principal

        leaf = principal(exc)
        if isinstance(leaf, LotcError):
            await framed.send_error(leaf)
    finally:
        await framed.aclose()


_peer_numbers = itertools.count(1)


SHA_A = hashlib.sha256(b"version a").digest()


def give_bundle(ctl: Controller, agent: str, name: str = "app", sha256: bytes = SHA_A) -> None:
    """The bundle `name` desired on `agent`, as after an upload."""
    ctl.model.set_desired_bundle(agent, name, sha256, BundleKind.FILE, 9, ctl.now_us())


def start_msg(target: str = "web-1", name: str = "svc", bundle: str = "app") -> ProcStart:
    return ProcStart(target=target, name=name, bundle=bundle, argv=("./run", "--fast"))


def ensure_token(ctl: Controller, role: Role, name: str) -> str:
    """A fresh live token for `name` (revoking any earlier one)."""
    ctl.model.revoke_token(name, ctl.now_us())
    return ctl.model.create_token(role, name, ctl.now_us())


async def connect_agent(
    nursery: trio.Nursery, ctl: Controller, name: str, *, state: AgentState | None = None,
    send_state: bool = False, token: str | None = None,
    answers: dict[type, Answer] | None = None, capabilities: tuple[str, ...] = (),
) -> FakeAgent:
    """A fake agent connected through the real handshake and `handle_agent`; online on return."""
    if token is None:
        token = ensure_token(ctl, Role.AGENT, name)
    server_end, agent_end = trio.testing.memory_stream_pair()
    server_framed = FramedStream(server_end, peer=f"mem-{next(_peer_numbers)}")
    nursery.start_soon(_guarded, handle_agent, ctl, server_framed)
    framed = FramedStream(agent_end, peer="server")
    previous = ctl.sessions.get(name)
    with trio.fail_after(DEADLINE_S):
        await client_handshake(framed, role=Role.AGENT, name=name, token=token,
                               capabilities=capabilities)
    fake = FakeAgent(name, framed, state or AgentState(), answers=dict(answers or {}))
    nursery.start_soon(fake.run)
    await wait_until(lambda: ctl.sessions.get(name) not in (None, previous))
    if send_state:
        await fake.send(fake.state)
    return fake


async def connect_console(
    nursery: trio.Nursery, ctl: Controller, name: str = "alice"
) -> FramedStream:
    """An authenticated admin connection served by the real `handle_admin`."""
    token = ensure_token(ctl, Role.ADMIN, name)
    server_end, console_end = trio.testing.memory_stream_pair()
    server_framed = FramedStream(server_end, peer=f"mem-{next(_peer_numbers)}")
    nursery.start_soon(_guarded, handle_admin, ctl, server_framed)
    framed = FramedStream(console_end, peer="server")
    with trio.fail_after(DEADLINE_S):
        await client_handshake(framed, role=Role.ADMIN, name=name, token=token)
    await wait_until(lambda: ctl._consoles.get(name))
    return framed


async def frames_until_closed(framed: FramedStream, timeout: float = DEADLINE_S) -> list[Frame]:
    """Every frame the peer sends until it closes; fails if it does not close in time."""
    frames = []
    with trio.fail_after(timeout):
        try:
            while True:
                frames.append(await framed.receive())
        except (PeerClosed, trio.BrokenResourceError):
            return frames


def errors_in(frames: list[Frame]) -> list[Error]:
    return [f.body for f in frames if isinstance(f.body, Error)]


# ------------------------------------------------------------------ a real server, in process


@dataclass
class InProcessCluster:
    """`serve_server` on 127.0.0.1 and ::1 (port 0), optionally one `serve_agent`."""

    config: ServerConfig
    bound: BoundAddresses
    tokens: dict[str, str]

    def agent_address(self, family: int) -> Address:
        return next(a for a in self.bound.agent if a.is_ipv6 == (family == 6))

    def admin_address(self, family: int) -> Address:
        return next(a for a in self.bound.admin if a.is_ipv6 == (family == 6))

    @property
    def ports(self) -> set[int]:
        return {a.port for a in self.bound.agent + self.bound.admin}


LOOPBACKS = (Address("127.0.0.1", 0), Address("::1", 0))


@asynccontextmanager
async def in_process_cluster(
    tmp_path: Path, *, agents: tuple[str, ...] = ("web-1",), admins: tuple[str, ...] = ("alice",),
    **overrides: Any,
) -> AsyncIterator[InProcessCluster]:
    """A server (and an agent per name in `agents`) in this trio run; all stopped on exit."""
    config = ServerConfig(db_path=tmp_path / "lotc.db", listen=LOOPBACKS, admin_listen=LOOPBACKS,
                          **overrides)
    enroll = Model(config.db_path)  # as `lotc token create` does, before the server starts
    try:
        tokens = {name: enroll.create_token(Role.AGENT, name, 1) for name in agents}
        tokens.update({name: enroll.create_token(Role.ADMIN, name, 1) for name in admins})
    finally:
        enroll.close()
    async with trio.open_nursery() as nursery:
        bound = await nursery.start(serve_server, config)
        cluster = InProcessCluster(config, bound, tokens)
        for index, name in enumerate(agents):
            link = LinkConfig(server=cluster.agent_address(4 if index % 2 == 0 else 6),
                              name=name, token=tokens[name], stats_interval_s=1.0,
                              backoff_base_s=0.1, backoff_cap_s=1.0)
            await nursery.start(serve_agent, AgentConfig(link, tmp_path / f"agent-{name}"))
        try:
            yield cluster
        finally:
            nursery.cancel_scope.cancel()
