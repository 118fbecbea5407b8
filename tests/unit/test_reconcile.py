"""Reconciliation: the plan from a reported AGENT_STATE, and carrying it out.

`plan` is checked case by case against a real model; `reconcile` end to end
with a fake agent that reports its state on connect, as a real one does.
"""
from __future__ import annotations

import hashlib
import logging

import pytest
import trio

from lotc.server.controller import Controller
from lotc.server.reconcile import plan
from lotc.server.records import ProcessSpecRecord
from protocol.enums import BundleKind, DesiredState, EventKind, ProcessState, RestartPolicy
from protocol.errors import ErrorCode
from protocol.messages import (
    AgentState,
    BundleBegin,
    BundleChunk,
    BundleEntry,
    BundleRemove,
    Error,
    Event,
    ProcessEntry,
    ProcStart,
)
from tests.server_helpers import (  # noqa: F401  (fixtures)
    connect_agent,
    ctl_fixture,
    model_fixture,
    wait_until,
    wall_fixture,
)

AGENT = "web-1"
BLOB = b"#!/bin/sh\necho hello\n" * 1000
SHA = hashlib.sha256(BLOB).digest()
OTHER_SHA = hashlib.sha256(b"older").digest()


def want_bundle(ctl: Controller, name: str = "app", sha256: bytes = SHA) -> None:
    ctl.model.set_desired_bundle(AGENT, name, sha256, BundleKind.FILE, len(BLOB), 1)


def want_process(ctl: Controller, name: str = "svc",
                 desired: DesiredState = DesiredState.RUNNING) -> ProcessSpecRecord:
    spec = ProcessSpecRecord(
        agent=AGENT, name=name, bundle="app", argv=("./app",), env=(("A", "1"),), cwd="",
        restart=RestartPolicy.ALWAYS, liveness_ms=0, grace_ms=0, backoff_base_ms=0,
        backoff_cap_ms=0, restart_limit=0, restart_window_s=0, desired=DesiredState.RUNNING,
        revision=0, updated_us=1,
    )
    stored = ctl.model.put_process(spec)
    if desired != DesiredState.RUNNING:
        stored = ctl.model.set_desired_state(AGENT, name, desired)
    return stored


def has_bundle(name: str = "app", sha256: bytes = SHA) -> BundleEntry:
    return BundleEntry(agent="", name=name, sha256=sha256, kind=BundleKind.FILE,
                       size=len(BLOB), stored_us=5)


def runs(spec: ProcessSpecRecord | None, state: ProcessState = ProcessState.RUNNING,
         name: str = "svc", revision: int | None = None) -> ProcessEntry:
    rev = revision if revision is not None else (spec.revision if spec else 1)
    return ProcessEntry(agent="", name=name, bundle="app", revision=rev, state=state, pid=42)


def summary(commands: list[object]) -> list[tuple[str, str]]:
    return [(type(c).__name__, c.name) for c in commands]  # type: ignore[attr-defined]


def test_nothing_to_do_when_the_agent_matches(ctl: Controller) -> None:
    want_bundle(ctl)
    spec = want_process(ctl)
    pushes, commands = plan(ctl, AGENT, AgentState(bundles=(has_bundle(),),
                                                   processes=(runs(spec),)))
    assert pushes == [] and commands == []


@pytest.mark.parametrize("held", [(), (has_bundle(sha256=OTHER_SHA),)],
                         ids=["missing", "different-sha"])
def test_missing_or_different_bundle_is_pushed(ctl: Controller, held: tuple) -> None:
    want_bundle(ctl)
    pushes, commands = plan(ctl, AGENT, AgentState(bundles=held))
    assert [(b.name, b.sha256) for b in pushes] == [("app", SHA)]
    assert commands == []


def test_missing_process_is_started_with_its_revision(ctl: Controller) -> None:
    want_bundle(ctl)
    spec = want_process(ctl)
    _, commands = plan(ctl, AGENT, AgentState(bundles=(has_bundle(),)))
    [start] = commands
    assert isinstance(start, ProcStart)
    assert (start.name, start.revision, start.argv, start.target) == ("svc", spec.revision,
                                                                      ("./app",), "")
    assert [(kv.key, kv.value) for kv in start.env] == [("A", "1")]


def test_stale_revision_is_started_again(ctl: Controller) -> None:
    want_bundle(ctl)
    spec = want_process(ctl)
    state = AgentState(bundles=(has_bundle(),),
                       processes=(runs(spec, revision=spec.revision - 1),))
    assert summary(plan(ctl, AGENT, state)[1]) == [("ProcStart", "svc")]


@pytest.mark.parametrize("actual", [ProcessState.RUNNING, ProcessState.STARTING,
                                    ProcessState.BACKOFF])
def test_desired_stopped_but_running_is_stopped(ctl: Controller, actual: ProcessState) -> None:
    want_bundle(ctl)
    spec = want_process(ctl, desired=DesiredState.STOPPED)
    state = AgentState(bundles=(has_bundle(),), processes=(runs(spec, actual),))
    assert summary(plan(ctl, AGENT, state)[1]) == [("ProcStop", "svc")]


def test_desired_stopped_and_missing_is_started_then_stopped(ctl: Controller) -> None:
    want_bundle(ctl)
    want_process(ctl, desired=DesiredState.STOPPED)
    _, commands = plan(ctl, AGENT, AgentState(bundles=(has_bundle(),)))
    assert summary(commands) == [("ProcStart", "svc"), ("ProcStop", "svc")]


def test_desired_running_but_stopped_is_resumed(ctl: Controller) -> None:
    want_bundle(ctl)
    spec = want_process(ctl)
    state = AgentState(bundles=(has_bundle(),), processes=(runs(spec, ProcessState.STOPPED),))
    assert summary(plan(ctl, AGENT, state)[1]) == [("ProcResume", "svc")]


@pytest.mark.parametrize("actual", [ProcessState.EXITED, ProcessState.FAILED])
def test_desired_running_but_ended_is_left_to_its_restart_policy(
    ctl: Controller, actual: ProcessState
) -> None:
    want_bundle(ctl)
    spec = want_process(ctl)
    state = AgentState(bundles=(has_bundle(),), processes=(runs(spec, actual),))
    assert plan(ctl, AGENT, state)[1] == []


@pytest.mark.parametrize("actual", [ProcessState.RUNNING, ProcessState.STOPPED,
                                    ProcessState.STARTING, ProcessState.BACKOFF])
def test_desired_exited_but_alive_is_terminated(ctl: Controller, actual: ProcessState) -> None:
    want_bundle(ctl)
    spec = want_process(ctl, desired=DesiredState.EXITED)
    state = AgentState(bundles=(has_bundle(),), processes=(runs(spec, actual),))
    assert summary(plan(ctl, AGENT, state)[1]) == [("ProcTerminate", "svc")]


@pytest.mark.parametrize("actual", [None, ProcessState.EXITED, ProcessState.FAILED])
def test_desired_exited_and_not_alive_is_left_alone(
    ctl: Controller, actual: ProcessState | None
) -> None:
    want_bundle(ctl)
    spec = want_process(ctl, desired=DesiredState.EXITED)
    procs = () if actual is None else (runs(spec, actual),)
    assert plan(ctl, AGENT, AgentState(bundles=(has_bundle(),), processes=procs)) == ([], [])


def test_extra_process_and_extra_bundle_are_removed_processes_first(ctl: Controller) -> None:
    want_bundle(ctl)
    spec = want_process(ctl)
    state = AgentState(
        bundles=(has_bundle(), has_bundle("old", OTHER_SHA)),
        processes=(runs(spec), runs(None, name="stray", revision=3)),
    )
    pushes, commands = plan(ctl, AGENT, state)
    assert pushes == []
    assert summary(commands) == [("ProcRemove", "stray"), ("BundleRemove", "old")]


def test_other_agents_desired_state_does_not_leak(ctl: Controller) -> None:
    ctl.model.set_desired_bundle("web-2", "app", SHA, BundleKind.FILE, 1, 1)
    assert plan(ctl, AGENT, AgentState()) == ([], [])


# ------------------------------------------------------------------ carried out


async def test_reconnecting_agent_is_brought_to_the_desired_state(
    ctl: Controller, nursery: trio.Nursery
) -> None:
    ctl.model.commit_blob(_partial(ctl), SHA)
    want_bundle(ctl)
    fresh = want_process(ctl, "fresh")
    paused = want_process(ctl, "paused", desired=DesiredState.STOPPED)
    gone = want_process(ctl, "gone", desired=DesiredState.EXITED)
    state = AgentState(
        bundles=(has_bundle("old", OTHER_SHA),),
        processes=(runs(paused, name="paused"), runs(gone, name="gone"),
                   runs(None, name="stray", revision=1)),
    )
    fake = await connect_agent(nursery, ctl, AGENT, state=state, send_state=True)
    await wait_until(lambda: fake.of_type(BundleRemove))
    kinds = [(type(f.body).__name__, getattr(f.body, "name", "")) for f in fake.received
             if not isinstance(f.body, BundleChunk)]
    assert kinds == [
        ("BundleBegin", "app"), ("BundleEnd", ""),  # bundles first: processes need them
        ("ProcStart", "fresh"),  # then each wanted process, by name
        ("ProcTerminate", "gone"),
        ("ProcStop", "paused"),
        ("ProcRemove", "stray"),  # removals last, processes before bundles
        ("BundleRemove", "old"),
    ]
    assert bytes(fake.bundle_bytes["app"]) == BLOB
    assert fake.of_type(ProcStart)[0].revision == fresh.revision
    # What the agent reported is recorded, so `ps` shows actual beside desired.
    assert {s.name for s in ctl.model.process_statuses(AGENT)} == {"paused", "gone", "stray"}
    assert [b.name for b in ctl.model.reported_bundles(AGENT)] == ["old"]


async def test_a_failed_step_is_an_event_and_the_rest_goes_on(
    ctl: Controller, nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    want_bundle(ctl)
    for name in ("a-first", "b-second"):
        want_process(ctl, name)
    refuse_a = {ProcStart: lambda frame: (
        Error(code=ErrorCode.SPAWN_FAILED, message="bad executable")
        if frame.body.name == "a-first" else None)}
    state = AgentState(bundles=(has_bundle(),))
    caplog.set_level(logging.WARNING, logger="lotc.server.reconcile")
    fake = await connect_agent(nursery, ctl, AGENT, state=state, send_state=True,
                               answers=refuse_a)
    # b-second gets no answer at all: it must not hold up the read loop of the link.
    errors = await wait_until(lambda: [e for e in ctl.model.events(agent=AGENT)
                                       if e.kind == EventKind.ERROR])
    assert "reconcile ProcStart a-first: bad executable" in errors[0].message
    assert any("a-first failed" in r.message for r in caplog.records)
    await wait_until(lambda: len(fake.of_type(ProcStart)) == 2)
    assert [s.name for s in fake.of_type(ProcStart)] == ["a-first", "b-second"]
    # b-second is still waiting for its answer; the link goes on meanwhile.
    await fake.send(Event(seq=1, kind=EventKind.PROCESS_STATE, process="x"))
    await wait_until(lambda: fake.acks == [1])


async def test_a_bundle_refused_on_reconnect_is_dropped_back_to_what_the_agent_holds(
    ctl: Controller, nursery: trio.Nursery
) -> None:
    # Issue 14 item 14: wanted while the agent was away, refused when it came back.
    ctl.model.commit_blob(_partial(ctl), SHA)
    want_bundle(ctl)
    refuse = {BundleBegin: lambda frame: Error(code=ErrorCode.BAD_BUNDLE, message="no thanks")}
    state = AgentState(bundles=(has_bundle("app", OTHER_SHA),))
    await connect_agent(nursery, ctl, AGENT, state=state, send_state=True, answers=refuse)
    errors = await wait_until(lambda: [e for e in ctl.model.events(agent=AGENT)
                                       if e.kind == EventKind.ERROR])
    assert "failed on web-1: no thanks" in errors[0].message, errors[0].message
    # Desired follows what the agent holds, so no reconnect pushes it again; the
    # refused bytes are wanted by nobody and go.
    assert [b.sha256 for b in ctl.model.desired_bundles(AGENT)] == [OTHER_SHA]
    assert plan(ctl, AGENT, state)[0] == []
    assert not ctl.model.has_blob(SHA)


def _partial(ctl: Controller):  # type: ignore[no-untyped-def]
    path = ctl.model.partial_blob_path(SHA)
    path.write_bytes(BLOB)
    return path


def test_a_one_shot_missed_while_away_is_reported_once_not_pushed(ctl: Controller) -> None:
    from lotc.server.reconcile import report_expired
    from lotc.server.records import ScheduleRecord
    from protocol.enums import Action, ScheduleKind

    want_process(ctl)
    now = ctl.now_us()

    def at(when_us: int) -> ScheduleRecord:
        return ctl.model.add_schedule(ScheduleRecord(
            id=0, agent=AGENT, process="svc", action=Action.STOP, signal="",
            kind=ScheduleKind.AT, cron="", tz="", at_us=when_us, next_fire_us=when_us,
            last_fire_us=0, created_us=now))

    missed, future = at(now - 3_600_000_000), at(now + 3_600_000_000)
    state = AgentState(processes=(runs(ctl.model.process(AGENT, "svc")),))
    pushed = plan(ctl, AGENT, state)[1]
    assert [c.schedule.id for c in pushed] == [future.id]  # type: ignore[attr-defined]
    report_expired(ctl, AGENT, state)
    report_expired(ctl, AGENT, state)  # a second reconnect says nothing more
    assert [r.id for r in ctl.model.schedules(AGENT)] == [future.id]
    reports = [e for e in ctl.model.events(agent=AGENT) if e.kind == EventKind.SCHEDULE_MISSED]
    assert len(reports) == 1 and f"schedule {missed.id} " in reports[0].message
