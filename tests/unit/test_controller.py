"""The controller without sockets: a real model on a tmp SQLite file, fake agents.

Each fake agent speaks the real codec and handshake over a memory stream to
the server's real `handle_agent`, so commands and replies take their
production path (session, request ids, read loop) minus TCP. Timeout logic
runs on trio's MockClock.
"""
from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import pytest
import trio
import trio.testing

from lotc.errors import (
    ChecksumMismatch,
    InvalidRequest,
    TooLarge,
    UnknownAgent,
)
from lotc.server import bundles
from lotc.server.admin_server import MAX_UPLOADS_PER_CONNECTION
from lotc.server.controller import Controller
from lotc.server.model import Model
from lotc.server.processes import DESIRED_AFTER, QUEUED, control_process, start_process
from lotc.server.tokens import revoke_token
from protocol.enums import BundleKind, DesiredState, EventKind, ProcessState, Role
from protocol.errors import ErrorCode
from protocol.messages import (
    BundleBegin,
    BundleChunk,
    BundleEnd,
    BundleReady,
    BundleRemove,
    Error,
    Event,
    Heartbeat,
    ProcKill,
    ProcRemove,
    ProcRestart,
    ProcResume,
    ProcStart,
    ProcStop,
    ProcTerminate,
    StatsReport,
)
from tests.server_helpers import (  # noqa: F401  (fixtures)
    DEADLINE_S,
    FakeClock,
    connect_agent,
    connect_console,
    ctl_fixture,
    ensure_token,
    errors_in,
    frames_until_closed,
    make_config,
    model_fixture,
    wait_until,
    wall_fixture,
)

SHA_A = hashlib.sha256(b"version a").digest()


def give_bundle(ctl: Controller, agent: str, name: str = "app", sha256: bytes = SHA_A) -> None:
    ctl.model.set_desired_bundle(agent, name, sha256, BundleKind.FILE, 9, ctl.now_us())


def start_msg(target: str = "web-1", name: str = "svc", bundle: str = "app") -> ProcStart:
    return ProcStart(target=target, name=name, bundle=bundle, argv=("./run", "--fast"))


# ------------------------------------------------------------------ targets


def test_resolve_targets_by_name_glob_and_all(ctl: Controller) -> None:
    for name in ("web-1", "web-2", "db-1"):
        ensure_token(ctl, Role.AGENT, name)
    ensure_token(ctl, Role.ADMIN, "alice")
    ctl.model.agent_connected("old-1", "host", "10.0.0.1:1", "lotc", ctl.now_us())  # seen, no token
    assert ctl.resolve_targets("web-1") == ["web-1"]
    assert ctl.resolve_targets("web-*") == ["web-1", "web-2"]
    assert ctl.resolve_targets(" all ") == ["db-1", "old-1", "web-1", "web-2"]
    assert ctl.resolve_targets("*") == ctl.resolve_targets("all")
    assert ctl.match_agents("") is None


def test_resolve_targets_errors_are_plain(ctl: Controller) -> None:
    ensure_token(ctl, Role.AGENT, "web-1")
    ensure_token(ctl, Role.ADMIN, "alice")
    ensure_token(ctl, Role.AGENT, "gone")
    ctl.model.revoke_token("gone", ctl.now_us())
    with pytest.raises(UnknownAgent, match=r"^unknown agent 'nope'$"):
        ctl.resolve_targets("nope")
    with pytest.raises(UnknownAgent, match=r"^no agent matches 'db-\*'$"):
        ctl.resolve_targets("db-*")
    with pytest.raises(UnknownAgent):
        ctl.resolve_targets("alice")  # an admin is not an agent
    with pytest.raises(UnknownAgent):
        ctl.resolve_targets("gone")  # revoked and never seen
    with pytest.raises(InvalidRequest, match="no agent given"):
        ctl.resolve_targets("  ")


# ------------------------------------------------------------------ start


async def test_start_records_desired_state_and_sends_to_online_agent(
    ctl: Controller, nursery: trio.Nursery
) -> None:
    fake = await connect_agent(nursery, ctl, "web-1")
    give_bundle(ctl, "web-1")
    results = await start_process(ctl, start_msg())
    assert [(r.agent, r.code, r.message) for r in results] == [
        ("web-1", ErrorCode.OK, "agent did ProcStart")]
    spec = ctl.model.process("web-1", "svc")
    assert spec.desired == DesiredState.RUNNING and spec.revision > 0
    assert spec.argv == ("./run", "--fast")
    [sent] = fake.of_type(ProcStart)
    assert sent.target == "" and sent.revision == spec.revision and sent.argv == spec.argv


async def test_start_for_offline_agent_is_queued(ctl: Controller, nursery: trio.Nursery) -> None:
    fake = await connect_agent(nursery, ctl, "web-1")
    ensure_token(ctl, Role.AGENT, "web-2")  # enrolled, never connected
    for agent in ("web-1", "web-2"):
        give_bundle(ctl, agent)
    results = await start_process(ctl, start_msg(target="web-*"))
    assert [(r.agent, r.code) for r in results] == [("web-1", ErrorCode.OK), ("web-2", ErrorCode.OK)]
    assert results[1].message == QUEUED
    assert results[1].message.startswith("agent offline: recorded")
    assert ctl.model.process("web-2", "svc").desired == DesiredState.RUNNING
    assert len(fake.of_type(ProcStart)) == 1


async def test_start_without_bundle_or_argv_is_refused(ctl: Controller) -> None:
    ensure_token(ctl, Role.AGENT, "web-1")
    [result] = await start_process(ctl, start_msg())
    assert result.code == ErrorCode.UNKNOWN_BUNDLE and "upload it first" in result.message
    with pytest.raises(InvalidRequest, match="nothing to run"):
        await start_process(ctl, ProcStart(target="web-1", name="svc", bundle="app"))
    with pytest.raises(UnknownAgent):
        await start_process(ctl, start_msg(target="nope"))
    assert ctl.model.find_process("web-1", "svc") is None


async def test_refused_start_is_forgotten(ctl: Controller, nursery: trio.Nursery) -> None:
    refuse = {ProcStart: lambda frame: Error(code=ErrorCode.INVALID_REQUEST,
                                             message="bad environment variable")}
    await connect_agent(nursery, ctl, "web-1", answers=refuse)
    give_bundle(ctl, "web-1")
    [result] = await start_process(ctl, start_msg())
    assert result.code == ErrorCode.INVALID_REQUEST
    assert ctl.model.find_process("web-1", "svc") is None


async def test_start_that_failed_to_spawn_is_kept_as_ended(
    ctl: Controller, nursery: trio.Nursery
) -> None:
    """The agent keeps a record of a spawn failure (with its error, across its restarts):
    the model keeps it too, desired exited, so nothing retries it and the next reconcile
    does not remove it from the agent (issue 14 item 9)."""
    refuse = {ProcStart: lambda frame: Error(code=ErrorCode.SPAWN_FAILED,
                                             message="./run: no such file")}
    await connect_agent(nursery, ctl, "web-1", answers=refuse)
    give_bundle(ctl, "web-1")
    [result] = await start_process(ctl, start_msg())
    assert (result.code, result.message) == (ErrorCode.SPAWN_FAILED, "./run: no such file")
    assert ctl.model.process("web-1", "svc").desired == DesiredState.EXITED


async def test_refused_restart_keeps_the_previous_spec(
    ctl: Controller, nursery: trio.Nursery
) -> None:
    fake = await connect_agent(nursery, ctl, "web-1")
    give_bundle(ctl, "web-1")
    await start_process(ctl, start_msg())
    before = ctl.model.process("web-1", "svc")
    fake.answers[ProcStart] = lambda frame: Error(code=ErrorCode.INVALID_REQUEST, message="nope")
    [result] = await start_process(
        ctl, ProcStart(target="web-1", name="svc", bundle="app", argv=("./other",)))
    assert result.code == ErrorCode.INVALID_REQUEST
    after = ctl.model.process("web-1", "svc")
    assert after.argv == before.argv and after.desired == before.desired
    # The agent still runs `before`: the restored spec must keep its revision, or the next
    # reconcile would see a stale revision and start the old spec over.
    assert after.revision == before.revision


async def test_start_over_an_active_process_is_a_conflict(
    ctl: Controller, nursery: trio.Nursery
) -> None:
    await connect_agent(nursery, ctl, "web-1")
    give_bundle(ctl, "web-1")
    await start_process(ctl, start_msg())
    ctl.model.note_process_state("web-1", "svc", ProcessState.RUNNING, -1, 0, ctl.now_us())
    [result] = await start_process(ctl, start_msg())
    assert result.code == ErrorCode.CONFLICT and "terminate it first" in result.message


# ------------------------------------------------------------------ control


@pytest.mark.parametrize("cls", [ProcStop, ProcResume, ProcTerminate, ProcKill, ProcRestart])
async def test_control_changes_desired_state_as_documented(
    ctl: Controller, nursery: trio.Nursery, cls: type
) -> None:
    fake = await connect_agent(nursery, ctl, "web-1")
    give_bundle(ctl, "web-1")
    await start_process(ctl, start_msg())
    # Start from a desired state different from the expected one, so a change is visible.
    other = DesiredState.STOPPED if DESIRED_AFTER[cls] != DesiredState.STOPPED \
        else DesiredState.RUNNING
    ctl.model.set_desired_state("web-1", "svc", other)
    [result] = await control_process(ctl, cls(target="web-1", name="svc", signal="", grace_ms=0))
    assert result.code == ErrorCode.OK, result.message
    assert ctl.model.process("web-1", "svc").desired == DESIRED_AFTER[cls]
    [sent] = fake.of_type(cls)
    assert sent.target == "" and sent.name == "svc"


async def test_kill_with_another_signal_changes_nothing_and_needs_the_agent(
    ctl: Controller, nursery: trio.Nursery
) -> None:
    fake = await connect_agent(nursery, ctl, "web-1")
    for agent in ("web-1", "web-2"):
        ensure_token(ctl, Role.AGENT, agent)
        give_bundle(ctl, agent)
    await start_process(ctl, start_msg(target="web-*"))
    results = await control_process(ctl, ProcKill(target="web-*", name="svc", signal="HUP"))
    assert [(r.agent, r.code) for r in results] == [
        ("web-1", ErrorCode.OK), ("web-2", ErrorCode.AGENT_OFFLINE)]
    assert "cannot wait" in results[1].message
    for agent in ("web-1", "web-2"):
        assert ctl.model.process(agent, "svc").desired == DesiredState.RUNNING
    assert fake.of_type(ProcKill)[0].signal == "HUP"
    # SIGKILL by number is the same as no signal: it changes the desired state.
    await control_process(ctl, ProcKill(target="web-1", name="svc", signal="9"))
    assert ctl.model.process("web-1", "svc").desired == DesiredState.EXITED


async def test_control_offline_is_queued_and_errors_are_per_agent(ctl: Controller) -> None:
    ensure_token(ctl, Role.AGENT, "web-2")
    give_bundle(ctl, "web-2")
    await start_process(ctl, start_msg(target="web-2"))
    [result] = await control_process(ctl, ProcStop(target="web-2", name="svc"))
    assert (result.code, result.message) == (ErrorCode.OK, QUEUED)
    assert ctl.model.process("web-2", "svc").desired == DesiredState.STOPPED
    [result] = await control_process(ctl, ProcStop(target="web-2", name="nope"))
    assert result.code == ErrorCode.UNKNOWN_PROCESS
    with pytest.raises(InvalidRequest, match="unknown signal"):
        await control_process(ctl, ProcKill(target="web-2", name="svc", signal="SIGWOBBLE"))
    [result] = await control_process(ctl, ProcRemove(target="web-2", name="svc"))
    assert result.code == ErrorCode.OK
    assert ctl.model.find_process("web-2", "svc") is None


# ------------------------------------------------------------------ uploads


def upload_begin(data: bytes, *, target: str = "web-*", name: str = "app",
                 sha256: bytes | None = None) -> BundleBegin:
    return BundleBegin(target=target, name=name, kind=BundleKind.FILE, size=len(data),
                       sha256=sha256 if sha256 is not None else hashlib.sha256(data).digest())


def write_all(upload: bundles.IncomingUpload, data: bytes, start: int = 0,
              chunk: int = 100_000) -> None:
    for offset in range(start, len(data), chunk):
        upload.write(BundleChunk(offset=offset, data=data[offset:offset + chunk]))


DATA = bytes(range(256)) * 2500  # 640,000 bytes: several agent-side chunks


async def test_upload_stores_blob_and_pushes_to_online_agents(
    ctl: Controller, nursery: trio.Nursery
) -> None:
    fake = await connect_agent(nursery, ctl, "web-1")
    ensure_token(ctl, Role.AGENT, "web-2")
    begin = upload_begin(DATA)
    upload = bundles.begin_upload(ctl, begin, ctl.config.max_bundle_bytes)
    assert bundles.ready_message(upload).offset == 0
    write_all(upload, DATA)
    results = await bundles.finish_upload(ctl, upload, BundleEnd(size=len(DATA)))
    assert [(r.agent, r.code) for r in results] == [("web-1", ErrorCode.OK), ("web-2", ErrorCode.OK)]
    assert results[0].message.startswith("loaded app (640000 bytes")
    assert "agent offline" in results[1].message
    assert ctl.model.has_blob(begin.sha256)
    assert [(b.agent, b.sha256) for b in ctl.model.desired_bundles(None)] == [
        ("web-1", begin.sha256), ("web-2", begin.sha256)]
    assert bytes(fake.bundle_bytes["app"]) == DATA
    chunks = fake.of_type(BundleChunk)
    assert len(chunks) > 1 and all(len(c.data) <= ctl.config.chunk_size for c in chunks)


async def test_push_resumes_from_what_the_agent_holds(
    ctl: Controller, nursery: trio.Nursery
) -> None:
    fake = await connect_agent(nursery, ctl, "web-1")
    fake.ready_offset = 300_000
    upload = bundles.begin_upload(ctl, upload_begin(DATA, target="web-1"), 10**9)
    write_all(upload, DATA)
    [result] = await bundles.finish_upload(ctl, upload, BundleEnd(size=len(DATA)))
    assert result.code == ErrorCode.OK
    assert bytes(fake.bundle_bytes["app"]) == DATA[300_000:]
    assert fake.of_type(BundleChunk)[0].offset == 300_000
    assert fake.of_type(BundleEnd)[0].size == len(DATA)


async def test_upload_with_wrong_sha256_is_refused_and_dropped(ctl: Controller) -> None:
    ensure_token(ctl, Role.AGENT, "web-1")
    wrong = hashlib.sha256(b"something else").digest()
    upload = bundles.begin_upload(ctl, upload_begin(DATA, sha256=wrong), 10**9)
    write_all(upload, DATA)
    with pytest.raises(ChecksumMismatch, match="upload it again"):
        await bundles.finish_upload(ctl, upload, BundleEnd(size=len(DATA)))
    assert not upload.path.exists()
    assert not ctl.model.has_blob(wrong) and ctl.model.desired_bundles(None) == []


async def test_upload_chunks_out_of_order_or_too_long_are_refused(ctl: Controller) -> None:
    ensure_token(ctl, Role.AGENT, "web-1")
    upload = bundles.begin_upload(ctl, upload_begin(DATA), 10**9)
    with pytest.raises(InvalidRequest, match="out of order"):
        upload.write(BundleChunk(offset=100, data=b"x"))
    write_all(upload, DATA)
    with pytest.raises(TooLarge, match="longer than the announced"):
        upload.write(BundleChunk(offset=len(DATA), data=b"x"))
    upload.close()
    with pytest.raises(TooLarge, match="the limit is 1000"):
        bundles.begin_upload(ctl, upload_begin(DATA), 1000)
    with pytest.raises(InvalidRequest, match="32 bytes"):
        bundles.begin_upload(ctl, upload_begin(DATA, sha256=b"short"), 10**9)


async def test_upload_resumes_from_a_partial_file(ctl: Controller) -> None:
    ensure_token(ctl, Role.AGENT, "web-1")
    begin = upload_begin(DATA)
    first = bundles.begin_upload(ctl, begin, 10**9)
    write_all(first, DATA[:250_000])
    with pytest.raises(InvalidRequest, match="send the rest to resume"):
        await bundles.finish_upload(ctl, first, BundleEnd(size=len(DATA)))
    # The console reconnects and asks again: the server says where to go on from.
    second = bundles.begin_upload(ctl, begin, 10**9)
    assert bundles.ready_message(second).offset == 250_000
    write_all(second, DATA, start=250_000)
    [result] = await bundles.finish_upload(ctl, second, BundleEnd(size=len(DATA)))
    assert result.code == ErrorCode.OK
    assert ctl.model.blob_path(begin.sha256).read_bytes() == DATA


async def test_remove_bundle_is_refused_while_a_process_uses_it(
    ctl: Controller, nursery: trio.Nursery
) -> None:
    fake = await connect_agent(nursery, ctl, "web-1")
    give_bundle(ctl, "web-1")
    await start_process(ctl, start_msg())
    [result] = await bundles.remove_bundle(ctl, BundleRemove(target="web-1", name="app"))
    assert result.code == ErrorCode.BUNDLE_IN_USE and "svc" in result.message
    assert fake.of_type(BundleRemove) == []
    await control_process(ctl, ProcTerminate(target="web-1", name="svc"))
    [result] = await bundles.remove_bundle(ctl, BundleRemove(target="web-1", name="app"))
    assert result.code == ErrorCode.OK
    assert ctl.model.desired_bundles("web-1") == [] and ctl.model.find_process("web-1", "svc") is None
    assert [b.name for b in fake.of_type(BundleRemove)] == ["app"]
    [result] = await bundles.remove_bundle(ctl, BundleRemove(target="web-1", name="app"))
    assert result.code == ErrorCode.UNKNOWN_BUNDLE


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
    await nursery.start(ctl.run_verdicts)
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
    await nursery.start(ctl.run_verdicts)
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
    await nursery.start(ctl.run_verdicts)
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
    reply = await revoke_token(ctl, "web-1")
    assert reply.message == "revoked web-1; closed 1 connection(s)"
    with trio.fail_after(DEADLINE_S):
        await fake.closed.wait()
    assert [e.code for e in fake.of_type(Error)] == [ErrorCode.TOKEN_REVOKED]
    assert "web-1" not in ctl.sessions
    assert not ctl.model.agent("web-1").online  # no grace: a revoked agent is not coming back
    assert agent_events(ctl, "web-1", EventKind.AGENT_OFFLINE)
    await revoke_token(ctl, "alice")
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
    await nursery.start(ctl.run_revocation_watch)
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
    assert error.code == ErrorCode.UNEXPECTED_MESSAGE and "agents may not send" in error.message
    assert "web-1" not in ctl.sessions and ctl.model.processes(None) == []


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def test_a_console_cannot_hold_unbounded_uploads_open(
    ctl: Controller, nursery: trio.Nursery
) -> None:
    ensure_token(ctl, Role.AGENT, "web-1")
    console = await connect_console(nursery, ctl)
    before = open_fds()
    for request_id in range(1, 101):  # BEGINs that never end, each with its own partial file
        data = f"bundle {request_id}".encode()
        await console.send(upload_begin(data, target="web-1", name=f"b{request_id}"), request_id)
    replies = []
    with trio.fail_after(DEADLINE_S):
        while len(replies) < 100:
            frame = await console.receive()
            if not isinstance(frame.body, Heartbeat):
                replies.append(frame.body)
    ready = [r for r in replies if isinstance(r, BundleReady)]
    refused = [r for r in replies if isinstance(r, Error)]
    assert len(ready) == MAX_UPLOADS_PER_CONNECTION
    assert {e.code for e in refused} == {ErrorCode.CONFLICT}
    assert "uploads already in progress" in refused[0].message
    assert open_fds() - before <= MAX_UPLOADS_PER_CONNECTION
    # BEGIN again under an id in progress: the old partial file is closed, not leaked.
    for _ in range(5):
        await console.send(upload_begin(b"again", target="web-1", name="b1"), 1)
        with trio.fail_after(DEADLINE_S):
            while not isinstance((await console.receive()).body, BundleReady):
                pass
    assert open_fds() - before <= MAX_UPLOADS_PER_CONNECTION
