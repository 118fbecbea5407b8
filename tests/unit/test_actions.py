"""One table maps every process command to its desired state and supervisor verb
(lotc/actions.py), for the server, the agent and the schedules alike."""
from __future__ import annotations

import hashlib
import signal
from pathlib import Path

import pytest
import trio

from lotc import actions
from lotc.actions import CONTROLS, Verb, for_action
from lotc.agent.clock import CorrectedClock
from lotc.agent.core import AgentCore
from lotc.agent.requests import COMMANDS
from lotc.server.admin_server import HANDLERS
from lotc.server.desired import desired_after_fire
from lotc.server.records import ScheduleRecord
from protocol.enums import Action, BundleKind, DesiredState, ScheduleKind
from protocol.enums import ProcessState as S
from protocol.message_types import MessageType
from protocol.messages import MESSAGE_CLASSES, ProcStart
from tests.agent_helpers import kill_leftovers


def control_message_types() -> list[MessageType]:
    """Every PROC_* message a console sends to control or start a process."""
    return [t for t in MessageType if t.name.startswith("PROC_")]


def test_every_action_has_exactly_one_row() -> None:
    for action in Action:
        rows = [row for row in CONTROLS if row.action == action]
        assert len(rows) == 1, action
        assert for_action(action) is rows[0]
        assert rows[0].verb.name == action.name  # a schedule does what the command does


def test_every_proc_message_has_exactly_one_row() -> None:
    types = control_message_types()
    assert types, "no PROC_* message types found"
    for message_type in types:
        cls = MESSAGE_CLASSES[message_type]
        rows = [row for row in CONTROLS if cls in row.messages]
        assert len(rows) == 1, message_type
        assert actions.BY_MESSAGE[cls] is rows[0]
    # and nothing else: every message in the table is a PROC_* one
    assert {cls.TYPE for row in CONTROLS for cls in row.messages} == set(types)
    assert len({row.verb for row in CONTROLS}) == len(CONTROLS) == len(Verb)


def test_server_and_agent_route_every_proc_message() -> None:
    for message_type in control_message_types():
        assert message_type in HANDLERS and message_type in COMMANDS, message_type


@pytest.mark.parametrize("row", CONTROLS, ids=lambda row: row.verb.name)
def test_desired_state_after_each_verb(row: actions.ProcessControl) -> None:
    expected = {
        Verb.START: DesiredState.RUNNING, Verb.RESUME: DesiredState.RUNNING,
        Verb.RESTART: DesiredState.RUNNING, Verb.STOP: DesiredState.STOPPED,
        Verb.TERMINATE: DesiredState.EXITED, Verb.KILL: DesiredState.EXITED,
        Verb.REMOVE: None,
    }[row.verb]
    assert row.desired_after() == expected
    # only KILL depends on the signal: SIGHUP is a reload, not an end
    assert row.desired_after(signal.SIGHUP) == (None if row.verb is Verb.KILL else expected)


def test_a_fired_schedule_moves_the_desired_state_by_the_same_row() -> None:
    for action in Action:
        for sig in ("", "HUP") if action == Action.KILL else ("",):
            record = ScheduleRecord(id=1, agent="a", process="p", action=action, signal=sig,
                                    kind=ScheduleKind.CRON, cron="* * * * *", tz="UTC",
                                    at_us=0, next_fire_us=0, last_fire_us=0, created_us=0)
            number = signal.SIGHUP if sig else signal.SIGKILL
            assert desired_after_fire(record) == for_action(action).desired_after(number)


# ------------------------------------------------------------------ the agent's side


async def make_core(tmp_path: Path) -> AgentCore:
    core = AgentCore(tmp_path / "state", CorrectedClock())
    data = b"#!/bin/sh\nexec sleep 60\n"
    upload = core.store.begin("b", BundleKind.FILE, len(data), hashlib.sha256(data).digest())
    upload.write(0, data)
    upload.commit()
    return core


async def test_each_verb_leaves_the_supervisor_in_the_tables_desired_state(
    tmp_path: Path, nursery: trio.Nursery,
) -> None:
    """The agent carries out every verb with real processes, and its supervisor ends
    up wanting what the server records for the same command."""
    core = await make_core(tmp_path)
    sup = core.supervisor
    await nursery.start(sup.run)
    try:
        await core.start(ProcStart(target="", name="p", bundle="b", argv=("/bin/sleep", "60")))
        for verb in (Verb.STOP, Verb.RESUME, Verb.KILL, Verb.START, Verb.RESTART,
                     Verb.TERMINATE, Verb.START, Verb.REMOVE):
            await core.control(verb, "p", grace=2.0)
            row = actions.BY_VERB[verb]
            if row.desired is None:
                assert "p" not in {info.name for info in sup.list()}
                continue
            if verb is Verb.KILL:
                await sup.wait_state("p", [S.EXITED], timeout=10)
            assert sup.get("p").desired == row.desired, verb
    finally:
        with trio.CancelScope(shield=True), trio.move_on_after(10):
            await sup.terminate_all(1.0)
        kill_leftovers(sup)
        core.close()
