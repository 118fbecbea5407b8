"""The controller's decisions from plain values: no stream, no socket, no face.

A real model on a tmp SQLite file; "links" are plain objects the controller only
hands back in its decisions (it never awaits them). What the faces then do with
those decisions is tested in test_controller_presence.py.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest
import trio

from lotc.errors import TokenRevoked
from lotc.server.controller import Controller
from lotc.server.decisions import Ack, Close
from lotc.server.model import Model
from lotc.server.sessions import AgentSession
from protocol.enums import EventKind, ProcessState, Role
from protocol.messages import Event, Hello
from tests.server_helpers import (  # noqa: F401  (fixtures)
    FakeClock,
    ctl_fixture,
    ensure_token,
    model_fixture,
    wall_fixture,
)


@dataclass(eq=False)
class PlainLink:
    """Stands where a FramedStream would: the controller may read its address, no more."""

    peer: str = "10.0.0.1:40000"


def session_of(name: str, link: PlainLink) -> AgentSession:
    return AgentSession(name, link, Hello(role=Role.AGENT, name=name), 0)  # type: ignore[arg-type]


def events_of(ctl: Controller, name: str, kind: EventKind) -> list[object]:
    return [e for e in ctl.model.events(agent=name) if e.kind == kind]


async def test_the_newest_connection_wins_and_the_old_one_is_to_be_closed(
    ctl: Controller,
) -> None:
    old_link, new_link = PlainLink(), PlainLink("10.0.0.2:40000")
    old = session_of("web-1", old_link)
    assert ctl.agent_connected(old) is None
    assert ctl.agent_connected(session_of("web-1", new_link)) == Close(old_link)
    assert old.closed and ctl.sessions["web-1"].framed is new_link  # type: ignore[comparison-overlap]
    assert len(events_of(ctl, "web-1", EventKind.AGENT_ONLINE)) == 1


async def test_judge_closes_a_silent_connection_then_declares_the_agent_offline(
    ctl: Controller,
) -> None:
    link = PlainLink()
    session = session_of("web-1", link)
    ctl.agent_connected(session)
    t0 = trio.current_time()
    ctl.heard_from(session, t0)
    limit, grace = ctl.config.silence_limit_s, ctl.config.offline_grace_s
    assert ctl.judge(t0 + limit - 0.01) == []
    closed_at = t0 + limit + 0.01
    assert ctl.judge(closed_at) == [Close(link)]
    assert "web-1" not in ctl.sessions and session.closed
    assert ctl.judge(closed_at + grace - 0.01) == []
    assert ctl.model.agent("web-1").online  # within the grace: no verdict yet
    assert ctl.judge(closed_at + grace + 0.01) == []
    assert not ctl.model.agent("web-1").online
    assert len(events_of(ctl, "web-1", EventKind.AGENT_OFFLINE)) == 1


async def test_events_are_acknowledged_and_stored_once(ctl: Controller) -> None:
    session = session_of("web-1", PlainLink())
    ctl.agent_connected(session)
    acks = []
    for seq in (1, 2, 1, 3):  # 1 replayed after a reconnect
        acks.append(ctl.agent_event(session, Event(
            seq=seq, time_us=seq, kind=EventKind.PROCESS_STATE, process="svc",
            old_state=ProcessState.STARTING, new_state=ProcessState.RUNNING, exit_code=-1)))
    assert acks == [Ack(1), Ack(2), Ack(1), Ack(3)]
    stored = sorted(e.seq for e in ctl.model.events(agent="web-1") if e.seq is not None)
    assert stored == [1, 2, 3]


async def test_cut_off_names_every_connection_but_the_askers(ctl: Controller) -> None:
    agent_link, alice_1, alice_2 = PlainLink(), PlainLink(), PlainLink()
    ctl.agent_connected(session_of("alice", agent_link))  # a name may be both (roles differ)
    ctl.admin_connected("alice", alice_1)
    ctl.admin_connected("alice", alice_2)
    closes = ctl.cut_off("alice", spare=alice_2)
    assert {close.link for close in closes} == {alice_1, agent_link}
    assert all(isinstance(close.error, TokenRevoked) for close in closes)
    assert "alice" not in ctl.sessions and not ctl.model.agent("alice").online
    assert ctl.cut_off("alice") == []  # nothing left


async def test_revocations_by_another_process_are_found_once(
    ctl: Controller, tmp_path: Path
) -> None:
    ensure_token(ctl, Role.AGENT, "web-1")
    link = PlainLink()
    ctl.agent_connected(session_of("web-1", link))
    ctl.revocations_seen()
    assert ctl.revocations() == []
    cli = Model(tmp_path / "lotc.db")  # `lotc token revoke` on the same file
    try:
        assert cli.revoke_token("web-1", 1)
    finally:
        cli.close()
    [close] = ctl.revocations()
    assert close.link is link and isinstance(close.error, TokenRevoked)
    assert ctl.revocations() == []


async def test_heartbeats_only_mark_the_agent_heard(ctl: Controller, wall: FakeClock) -> None:
    session = session_of("web-1", PlainLink())
    ctl.agent_connected(session)
    ctl.flush(all_seen=True)
    before = ctl.model.agent("web-1").last_seen_us
    wall.advance(1_000_000)
    ctl.heard_from(session, 123.0)
    assert session.last_seen_monotonic == 123.0
    assert ctl.model.agent("web-1").last_seen_us == before  # batched, not written per beat
    ctl.flush(all_seen=True)
    assert ctl.model.agent("web-1").last_seen_us == wall.now


# ------------------------------------------------------------------ the boundaries, read from the source

SERVER = Path(__file__).resolve().parents[2] / "lotc" / "server"
COMMAND_MODULES = ("queries", "reconcile", "bundles", "processes", "schedules", "tokens", "logs")


def imported_modules(tree: ast.Module) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_the_controller_does_no_io() -> None:
    """No stream in sight, and nothing awaited but the checkpoints between its batches."""
    tree = ast.parse((SERVER / "controller.py").read_text(encoding="utf-8"))
    assert not {m for m in imported_modules(tree) if m.startswith("lotc.net")}
    awaited = {ast.unparse(node.value) for node in ast.walk(tree) if isinstance(node, ast.Await)}
    assert awaited == {"trio.lowlevel.checkpoint()"}


@pytest.mark.parametrize("name", COMMAND_MODULES)
def test_command_modules_see_only_the_command_context(name: str) -> None:
    source = (SERVER / f"{name}.py").read_text(encoding="utf-8")
    assert "lotc.server.controller" not in imported_modules(ast.parse(source))
    assert "ctl.model" not in source and "ctl.sessions" not in source
