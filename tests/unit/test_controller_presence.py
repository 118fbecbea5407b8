"""Controller presence without sockets: events, heartbeats, verdicts, revocation.

A real model on a tmp SQLite file, fake agents over memory streams to the real
`handle_agent`; timeout logic runs on trio's MockClock.
"""
from __future__ import annotations

import logging
from pathlib import Path

import pytest
import trio
import trio.testing

from lotc.server.controller import Controller
from lotc.server.duties import carry_out, run_revocation_watch, run_verdicts
from lotc.server.model import Model
from lotc.server.processes import start_process
from lotc.server.tokens import revoke_token
from protocol.enums import DesiredState, EventKind, ProcessState, Role
from protocol.errors import ErrorCode
from protocol.messages import (
    Error,
    Event,
    Heartbeat,
    ProcStart,
    StatsReport,
)
from tests.server_helpers import (  # noqa: F401  (fixtures)
    DEADLINE_S,
    SHA_A,
    FakeClock,
    connect_agent,
    connect_console,
    ctl_fixture,
    ensure_token,
    errors_in,
    frames_until_closed,
    give_bundle,
    make_config,
    model_fixture,
    start_msg,
    wait_until,
    wall_fixture,
)

# ------------------------------------------------------------------ agent reports


def event(seq: int, state: ProcessState = ProcessState.RUNNING) -> Event:
    return Event(seq=seq, time_us=seq, kind=EventKind.PROCESS_STATE, process="svc",
                 old_state=ProcessState.STARTING, new_state=state, exit_code=-1)


async def test_events_are_stored_once_and_acknowledged(
    ctl: Controller, nursery: trio.Nursery
) -> None:
    fake = await connect_agent(nursery, ctl, "web-1")
    async with ctl.subscribe_events() as live:
        for seq in (1, 2, 1, 2, 3):  # 1 and 2 replayed after a reconnect
            await fake.send(event(seq, ProcessState.EXITED if seq == 3 else ProcessState.RUNNING))
        await wait_until(lambda: len(fake.acks) == 5)
        published = []
        while True:
            try:
                published.append(live.receive_nowait())
            except trio.WouldBlock:
                break
    assert fake.acks == [1, 2, 1, 2, 3]
    stored = [e.seq for e in ctl.model.events(agent="web-1") if e.seq is not None]
    assert sorted(stored) == [1, 2, 3]
    assert [e.seq for e in published] == [1, 2, 3]
    assert ctl.model.last_event_seq("web-1") == 3
    [status] = ctl.model.process_statuses("web-1")
    assert status.state == ProcessState.EXITED
    # A later connection is told what is stored, so the agent does not replay it again.
    assert ctl.welcome(fake_hello("web-1")).last_event_seq == 3


async def test_desired_state_follows_an_end_newer_than_the_last_command(
    ctl: Controller, nursery: trio.Nursery, wall: FakeClock
) -> None:
    """Issue 14 item 9: after a clean exit or `failed`, DESIRED does not stay running;
    an end older than a later command (a late replay) does not undo that command."""
    fake = await connect_agent(nursery, ctl, "web-1")
    give_bundle(ctl, "web-1")
    await start_process(ctl, start_msg())
    started = ctl.model.process("web-1", "svc").updated_us
    late = Event(seq=1, time_us=started - 1, kind=EventKind.PROCESS_STATE, process="svc",
                 old_state=ProcessState.RUNNING, new_state=ProcessState.EXITED, exit_code=0)
    await fake.send(late)
    await wait_until(lambda: fake.acks == [1])
    assert ctl.model.process("web-1", "svc").desired == DesiredState.RUNNING
    for seq, state in ((2, ProcessState.FAILED), (3, ProcessState.EXITED)):
        await fake.send(Event(seq=seq, time_us=started + seq, kind=EventKind.PROCESS_STATE,
                              process="svc", old_state=ProcessState.RUNNING, new_state=state,
                              exit_code=1))
    await wait_until(lambda: fake.acks == [1, 2, 3])
    assert ctl.model.process("web-1", "svc").desired == DesiredState.EXITED


def fake_hello(name: str):  # type: ignore[no-untyped-def]
    from protocol.messages import Hello

    return Hello(role=Role.AGENT, name=name)


async def test_heartbeats_are_batched_into_one_model_write(
    ctl: Controller, nursery: trio.Nursery, wall: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    fakes = [await connect_agent(nursery, ctl, f"web-{i}") for i in (1, 2, 3)]
    connected_at = wall.now
    calls: list[set[str]] = []
    real = ctl.model.agent_seen
    monkeypatch.setattr(ctl.model, "agent_seen",
                        lambda names, now_us: (calls.append(set(names)), real(names, now_us)))
    ctl.flush()
    calls.clear()
    later = wall.advance(5_000_000)
    for fake in fakes[:2]:
        for seq in range(3):
            await fake.send(Heartbeat(seq=seq))
    await fakes[0].send(StatsReport(agent="web-1", time_us=later))
    await wait_until(lambda: ctl._heard_from == {"web-1", "web-2"} and ctl._pending_stats)
    assert ctl.model.agent("web-1").last_seen_us == connected_at  # not written yet
    ctl.flush()
    assert calls == [{"web-1", "web-2"}]
    assert ctl.model.agent("web-1").last_seen_us == later
    assert ctl.model.agent("web-2").last_seen_us == later
    assert ctl.model.agent("web-3").last_seen_us == connected_at
    assert [r.time_us for r in ctl.model.stats_history("web-1")] == [later]
    ctl.flush()
    assert len(calls) == 1  # nothing heard since: no write at all


# ------------------------------------------------------------------ verdicts (MockClock)


def agent_events(ctl: Controller, name: str, kind: EventKind) -> list[object]:
    return [e for e in ctl.model.events(agent=name) if e.kind == kind]


async def test_silent_session_is_closed_after_missed_heartbeats(
    ctl: Controller, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    fake = await connect_agent(nursery, ctl, "web-1")
    session = ctl.sessions["web-1"]
    await nursery.start(run_verdicts, ctl)
    started = trio.current_time()
    # A beating agent is kept, however long it lives.
    silent_since = trio.current_time()
    with trio.move_on_after(10):
        while True:
            await fake.send(Heartbeat())
            silent_since = trio.current_time()
            await trio.sleep(ctl.config.heartbeat_interval_s)
    assert ctl.sessions.get("web-1") is session
    await wait_until(lambda: "web-1" not in ctl.sessions, timeout=60)
    took = trio.current_time() - silent_since
    limit = ctl.config.silence_limit_s
    assert limit <= took <= limit + ctl.config.verdict_tick_s + 0.01
    assert session.closed
    with trio.fail_after(1):
        await fake.closed.wait()  # the server closed the connection
    assert started < silent_since


async def test_agent_gone_past_the_grace_is_declared_offline(
    ctl: Controller, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    fake = await connect_agent(nursery, ctl, "web-1")
    assert ctl.model.agent("web-1").online
    assert len(agent_events(ctl, "web-1", EventKind.AGENT_ONLINE)) == 1
    await nursery.start(run_verdicts, ctl)
    await fake.disconnect()
    await wait_until(lambda: "web-1" not in ctl.sessions)
    gone_at = ctl._disconnected_at["web-1"]
    await wait_until(lambda: not ctl.model.agent("web-1").online, timeout=60)
    took = trio.current_time() - gone_at
    assert ctl.config.offline_grace_s <= took <= ctl.config.offline_grace_s + 2 * ctl.config.verdict_tick_s
    [offline] = agent_events(ctl, "web-1", EventKind.AGENT_OFFLINE)
    assert "stopped answering" in offline.message  # type: ignore[attr-defined]
    # Coming back is an AGENT_ONLINE event of its own.
    await connect_agent(nursery, ctl, "web-1")
    assert ctl.model.agent("web-1").online
    assert len(agent_events(ctl, "web-1", EventKind.AGENT_ONLINE)) == 2


async def test_reconnect_within_the_grace_is_not_an_outage(
    ctl: Controller, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    fake = await connect_agent(nursery, ctl, "web-1")
    await nursery.start(run_verdicts, ctl)
    await fake.disconnect()
    await wait_until(lambda: "web-1" not in ctl.sessions)
    await trio.sleep(ctl.config.offline_grace_s / 2)
    fake = await connect_agent(nursery, ctl, "web-1")
    # Keep it beating well past the grace: no verdict may flap.
    with trio.move_on_after(ctl.config.offline_grace_s * 5):
        while True:
            await fake.send(Heartbeat())
            await trio.sleep(ctl.config.heartbeat_interval_s)
    assert ctl.model.agent("web-1").online
    assert agent_events(ctl, "web-1", EventKind.AGENT_OFFLINE) == []
    assert len(agent_events(ctl, "web-1", EventKind.AGENT_ONLINE)) == 1


async def test_newest_connection_of_a_name_wins(ctl: Controller, nursery: trio.Nursery) -> None:
    old = await connect_agent(nursery, ctl, "web-1")
    old_session = ctl.sessions["web-1"]
    token = ensure_token(ctl, Role.AGENT, "web-1")
    new = await connect_agent(nursery, ctl, "web-1", token=token)
    with trio.fail_after(DEADLINE_S):
        await old.closed.wait()
    assert old_session.closed and ctl.sessions["web-1"] is not old_session
    give_bundle(ctl, "web-1")
    [result] = await start_process(ctl, start_msg())
    assert result.code == ErrorCode.OK
    assert len(new.of_type(ProcStart)) == 1 and old.of_type(ProcStart) == []


# ------------------------------------------------------------------ revocation


async def test_revocation_cuts_off_the_agent_and_the_consoles(
    ctl: Controller, nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    fake = await connect_agent(nursery, ctl, "web-1")
    console = await connect_console(nursery, ctl, "alice")
    other = await connect_console(nursery, ctl, "bob")
    caplog.set_level(logging.WARNING, logger="lotc.server.controller")
    reply, closes = revoke_token(ctl, "web-1")
    await carry_out(closes)
    assert reply.message == "revoked web-1; closed 1 connection(s)"
    with trio.fail_after(DEADLINE_S):
        await fake.closed.wait()
    assert [e.code for e in fake.of_type(Error)] == [ErrorCode.TOKEN_REVOKED]
    assert "web-1" not in ctl.sessions
    assert not ctl.model.agent("web-1").online  # no grace: a revoked agent is not coming back
    assert agent_events(ctl, "web-1", EventKind.AGENT_OFFLINE)
    await carry_out(revoke_token(ctl, "alice")[1])
    frames = await frames_until_closed(console)
    assert [e.code for e in errors_in(frames)] == [ErrorCode.TOKEN_REVOKED]
    assert ctl._consoles.get("alice") is None and ctl._consoles["bob"]
    assert [r.message for r in caplog.records if "cut off" in r.message] == [
        "cut off 1 connection(s) of web-1: token revoked",
        "cut off 1 connection(s) of alice: token revoked",
    ]
    del other


async def test_revocation_by_another_process_is_noticed(
    ctl: Controller, nursery: trio.Nursery, tmp_path: Path
) -> None:
    fake = await connect_agent(nursery, ctl, "web-1")
    await nursery.start(run_revocation_watch, ctl)
    cli = Model(tmp_path / "lotc.db")  # `lotc token revoke` on the same file
    try:
        assert cli.revoke_token("web-1", 1)
    finally:
        cli.close()
    with trio.fail_after(DEADLINE_S):
        await fake.closed.wait()
    assert [e.code for e in fake.of_type(Error)] == [ErrorCode.TOKEN_REVOKED]
    assert "web-1" not in ctl.sessions


async def test_controller_config_is_the_one_given(tmp_path: Path, model: Model) -> None:
    config = make_config(tmp_path, heartbeat_interval_s=0.5, missed_heartbeats=4)
    controller = Controller(model, config)
    assert controller.config.silence_limit_s == 2.0
    assert controller.known_agents() == []


# ------------------------------------------------------------------ hostile peers, authenticated


async def test_an_agent_sending_a_console_command_is_cut_off(
    ctl: Controller, nursery: trio.Nursery
) -> None:
    fake = await connect_agent(nursery, ctl, "web-1")
    await fake.send(start_msg(target="all"), 5)
    with trio.fail_after(DEADLINE_S):
        await fake.closed.wait()
    [error] = fake.of_type(Error)
    assert error.code == ErrorCode.UNEXPECTED_MESSAGE and "an agent may not send PROC_START" in error.message
    assert "web-1" not in ctl.sessions and ctl.model.processes(None) == []
