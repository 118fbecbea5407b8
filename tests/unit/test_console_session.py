"""The REPL's trio half (Session) against a real in-process server; toolbar and history.

The server is `serve_server` on a fixed loopback port, so it can be stopped
and started again under the session to exercise the reconnection.
"""
from __future__ import annotations

import io
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
import trio

from admin_console.commands import build_registry
from admin_console.history import ENV_HISTORY, history_path, open_history
from admin_console.live_state import AgentInfo, ProcessInfo, ServerState
from admin_console.registry import Invocation, Outcome, parse_line
from admin_console.script import EXIT_FAILED, Connection, Streams, plan, run_script
from admin_console.session import Link, LinkState, Session, notable
from admin_console.toolbar import toolbar_text
from lotc.net.address import Address
from lotc.server.app import serve_server
from lotc.server.config import ServerConfig
from lotc.server.model import Model
from protocol.enums import EventKind, ProcessState, Role
from protocol.messages import Event
from tests.cluster import free_port

DEADLINE_S = 10.0
REGISTRY = build_registry()


async def wait_for(check: Callable[[], object], what: str) -> None:
    with trio.fail_after(DEADLINE_S):
        while not check():
            await trio.sleep(0.01)


class Harness:
    def __init__(self, tmp_path: Path) -> None:
        self.db = tmp_path / "lotc.db"
        model = Model(self.db)
        token = model.create_token(Role.ADMIN, "admin", time.time_ns() // 1000)
        model.close()
        port = free_port()
        self.config = ServerConfig(db_path=self.db, listen=(Address("127.0.0.1", 0),),
                                   admin_listen=(Address("127.0.0.1", port),))
        self.out = io.StringIO()
        self.session = Session(Connection(Address("127.0.0.1", port), token, "admin"), REGISTRY,
                               out=self.out, err=self.out, progress=False, changed=lambda: None)
        self.server: trio.CancelScope | None = None

    async def start_server(self, nursery: trio.Nursery) -> None:
        """Start the server; it serves until `stop_server`."""
        scope = trio.CancelScope()

        async def serve(task_status: trio.TaskStatus[object] = trio.TASK_STATUS_IGNORED) -> None:
            with scope:
                await serve_server(self.config, task_status=task_status)

        await nursery.start(serve)
        self.server = scope

    def stop_server(self) -> None:
        assert self.server is not None
        self.server.cancel()

    async def run(self, line: str) -> Outcome:
        done = trio.Event()
        outcome: list[Outcome] = []

        def finished(result: Outcome) -> None:
            outcome.append(result)
            done.set()

        self.session.submit(_parse(line), finished)
        with trio.fail_after(DEADLINE_S):
            await done.wait()
        return outcome[0]

    @property
    def text(self) -> str:
        return self.out.getvalue()


def _parse(line: str) -> Sequence[Invocation]:
    invocation = parse_line(REGISTRY, line)
    assert invocation is not None
    return [invocation]


async def test_session_runs_commands_interrupts_and_reconnects(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    session = h.session
    async with trio.open_nursery() as nursery:
        await h.start_server(nursery)
        nursery.start_soon(session.run)
        await wait_for(lambda: session.connected, "connected")
        assert "connected to 127.0.0.1" in h.text
        await wait_for(lambda: session.state.fetched_at is not None, "state fetched")

        assert await h.run("agents") is Outcome.OK
        assert "no agents" in h.text

        # Ctrl-C once: the follow stream ends politely (CANCEL, then the server's OK)
        follow = trio.Event()
        nursery.start_soon(lambda: _run_and_set(h, "events -f", follow))
        await wait_for(lambda: session._waiting_interrupt, "events -f listening for Ctrl-C")
        session.interrupt()
        with trio.fail_after(DEADLINE_S):
            await follow.wait()
        assert "interrupted" not in h.text

        # the server's error, in plain words
        assert await h.run("logs nosuch web -f") is Outcome.FAILED
        assert "error: unknown agent 'nosuch'" in h.text

        # Ctrl-C twice: cancelled outright; the connection carries on
        follow = trio.Event()
        nursery.start_soon(lambda: _run_and_set(h, "events -f", follow))
        await wait_for(lambda: session._waiting_interrupt, "events -f listening for Ctrl-C")
        session.interrupt()
        session.interrupt()
        with trio.fail_after(DEADLINE_S):
            await follow.wait()
        assert "interrupted" in h.text
        assert await h.run("agents") is Outcome.OK and session.connected

        # the server goes away: said once, commands fail plainly, then it comes back
        h.stop_server()
        await wait_for(lambda: session.link.state is LinkState.DISCONNECTED, "disconnected")
        assert "lost: the server closed the connection; reconnecting" in h.text
        assert await h.run("ps") is Outcome.FAILED
        assert "error: not connected to 127.0.0.1" in h.text
        assert await h.run("help ps") is Outcome.OK  # no server needed
        await h.start_server(nursery)
        await wait_for(lambda: session.connected, "reconnected")
        assert "reconnected to 127.0.0.1" in h.text
        assert await h.run("agents") is Outcome.OK
        session.stop()
        h.stop_server()


async def _run_and_set(h: Harness, line: str, done: trio.Event) -> None:
    await h.run(line)
    done.set()


async def test_refused_token_gives_up_at_once(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.session.connection = Connection(h.session.connection.address, "wrong", "admin")
    async with trio.open_nursery() as nursery:
        await h.start_server(nursery)
        with trio.fail_after(DEADLINE_S):
            await h.session.run()  # returns by itself: nothing left to do
        h.stop_server()
    assert h.session.link.state is LinkState.REFUSED
    assert "authentication failed" in h.session.link.reason


def _event(kind: EventKind, new: ProcessState = ProcessState.NONE) -> Event:
    return Event(agent="n1", kind=kind, process="web", new_state=new)


def test_notable_events() -> None:
    assert notable(_event(EventKind.AGENT_OFFLINE))
    assert notable(_event(EventKind.LIVENESS_MISSED))
    assert notable(_event(EventKind.PROCESS_STATE, ProcessState.BACKOFF))
    assert not notable(_event(EventKind.PROCESS_STATE, ProcessState.RUNNING))
    assert not notable(_event(EventKind.BUNDLE_STORED))


def test_toolbar_says_where_and_how_many(tmp_path: Path) -> None:
    session = Harness(tmp_path).session
    session.link = Link(LinkState.CONNECTED)
    session.state = ServerState(agents=(AgentInfo("a", True), AgentInfo("b", False)),
                                fetched_at=1.0)
    text = "".join(part[1] for part in toolbar_text(session))
    assert "admin@127.0.0.1:" in text and "1/2 agents online · 0 processes" in text
    session.state = ServerState(agents=(AgentInfo("a", True),),
                                processes=(ProcessInfo("a", "web", "running"),), fetched_at=1.0)
    text = "".join(part[1] for part in toolbar_text(session))
    assert "1/1 agents online · 1 process ·" in text  # not "1 processes"
    session.link = Link(LinkState.DISCONNECTED, "connection refused", retry_at=10.2)
    text = "".join(part[1] for part in toolbar_text(session, now=7.0))
    assert "NOT CONNECTED: connection refused · retrying in 4s" in text


def test_history_file_location(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_HISTORY, raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    assert history_path() == tmp_path / "state" / "lotc" / "history"
    monkeypatch.setenv(ENV_HISTORY, str(tmp_path / "h"))
    assert history_path() == tmp_path / "h"
    _, warning = open_history(tmp_path / "deep" / "history")
    assert warning is None and (tmp_path / "deep" / "history").exists()
    (tmp_path / "file").write_text("")
    _, warning = open_history(tmp_path / "file" / "history")  # a file where a dir should be
    assert warning is not None and "history is not saved" in warning


async def test_script_reports_a_follow_streams_error_plainly(tmp_path: Path) -> None:
    """`-c "logs nosuch web -f"`: the server's error, not a traceback from a nursery."""
    h = Harness(tmp_path)
    c = h.session.connection
    async with trio.open_nursery() as nursery:
        await h.start_server(nursery)
        status = await run_script(REGISTRY, plan(REGISTRY, [("c", "logs nosuch web -f")]), c,
                                  streams=Streams(h.out, h.out))
        h.stop_server()
    assert status == EXIT_FAILED
    assert "unknown agent 'nosuch'" in h.text
