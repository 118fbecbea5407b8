"""Bring a (re)connected agent to the desired state.

The agent reports what it has (AGENT_STATE: bundles by name and SHA-256,
processes with the revision of the spec they run and their state). The
difference from the model's desired state becomes commands, sent in an
order that cannot fail half-way for a reason we could have avoided: bundles
first (processes need them), then process specs, then desired states, then
removals (processes before their bundles).

Every step is idempotent on the agent (a PROC_START with the revision the
agent already runs is a no-op), so a reconcile interrupted by another
disconnect is simply redone on the next connect: nothing runs twice.
"""
from __future__ import annotations

import logging

from lotc.errors import LotcError
from lotc.options import refused_options
from lotc.parse.crontimes import format_us
from lotc.process_states import ALIVE, RUNNABLE
from lotc.server.bundles import deliver_or_drop
from lotc.server.command_context import CommandContext
from lotc.server.processes import start_message
from lotc.server.records import BundleRecord, ProcessStatusRecord, ScheduleRecord
from lotc.server.schedules import PAST_TOLERANCE_US, entry_of
from lotc.server.sessions import AgentSession
from protocol.enums import DesiredState, EventKind, ProcessState, ScheduleKind
from protocol.messages import (
    AgentState,
    BundleRemove,
    Message,
    ProcRemove,
    ProcResume,
    ProcStop,
    ProcTerminate,
    ScheduleClear,
    ScheduleEntry,
    ScheduleSet,
)

logger = logging.getLogger(__name__)



def record_report(ctl: CommandContext, agent: str, state: AgentState) -> None:
    now = ctl.now_us()
    ctl.store.replace_reported_bundles(agent, [
        BundleRecord(agent, b.name, b.sha256, b.kind, b.size, b.stored_us) for b in state.bundles
    ])
    ctl.store.replace_process_statuses(agent, [
        ProcessStatusRecord(
            agent=agent, name=p.name, bundle=p.bundle, revision=p.revision, state=p.state,
            pid=p.pid, exit_code=p.exit_code, exit_signal=p.exit_signal, restarts=p.restarts,
            started_us=p.started_us, last_liveness_us=p.last_liveness_us, status=p.status,
            updated_us=now,
        )
        for p in state.processes
    ])
    ctl.fleet.processes_reported(agent, state.processes)
    known = {r.id for r in ctl.store.schedules(agent)}
    for held in state.schedules:  # the agent knows when they fired: keep the server's view fresh
        if held.id in known:
            ctl.store.update_schedule_fire(held.id, held.next_fire_us, held.last_fire_us)


def plan(ctl: CommandContext, agent: str, state: AgentState) -> tuple[list[BundleRecord], list[Message]]:
    """Bundles to push, then the commands to send, in order."""
    have_bundles = {b.name: b.sha256 for b in state.bundles}
    want_bundles = ctl.store.desired_bundles(agent)
    pushes = [b for b in want_bundles if have_bundles.get(b.name) != b.sha256]
    running = {p.name: p for p in state.processes}
    wanted = {p.name: p for p in ctl.store.processes(agent)}
    commands: list[Message] = []
    session = ctl.session(agent)
    capabilities = session.hello.capabilities if session is not None else ()
    for spec in wanted.values():
        actual = running.get(spec.name)
        if spec.desired == DesiredState.EXITED:
            if actual is not None and actual.state in ALIVE:
                commands.append(ProcTerminate(target="", name=spec.name, signal="", grace_ms=0))
            continue
        if actual is None or actual.revision != spec.revision:
            refused = refused_options(spec.options, capabilities)
            if refused:  # never run it without its --user (as root, say): say so instead
                logger.warning("%s: not starting %s: %s", agent, spec.name, refused)
                continue
            commands.append(start_message(spec, capabilities))
            actual_state = ProcessState.STARTING
        else:
            actual_state = actual.state
        if spec.desired == DesiredState.STOPPED and actual_state in RUNNABLE:
            commands.append(ProcStop(target="", name=spec.name, signal="", grace_ms=0))
        elif spec.desired == DesiredState.RUNNING and actual_state == ProcessState.STOPPED:
            commands.append(ProcResume(target="", name=spec.name, signal="", grace_ms=0))
    for name in running.keys() - wanted.keys():
        commands.append(ProcRemove(target="", name=name, signal="", grace_ms=0))
    wanted_names = {b.name for b in want_bundles}
    for name in have_bundles.keys() - wanted_names:
        commands.append(BundleRemove(target="", name=name))
    commands.extend(_schedule_commands(ctl, agent, state))
    return pushes, commands


def _schedule_commands(ctl: CommandContext, agent: str, state: AgentState) -> list[Message]:
    """Schedules the agent lacks (or holds in another form) are set; extra ones cleared."""
    have = {s.id: s for s in state.schedules}
    want = {r.id: r for r in ctl.store.schedules(agent)}
    commands: list[Message] = []
    for schedule_id, record in want.items():
        held = have.get(schedule_id)
        if held is None and _expired(ctl, record):
            continue  # reported as missed by reconcile(), not pushed to fail every time
        if held is None or _definition(held) != _definition(entry_of(record)):
            commands.append(ScheduleSet(target="", schedule=entry_of(record)))
    for schedule_id in have.keys() - want.keys():
        commands.append(ScheduleClear(target="", id=schedule_id))
    return commands


def _expired(ctl: CommandContext, record: ScheduleRecord) -> bool:
    """A one-shot whose time passed while its agent was away: it can no longer be set."""
    return record.kind == ScheduleKind.AT and record.at_us < ctl.now_us() - PAST_TOLERANCE_US


def report_expired(ctl: CommandContext, agent: str, state: AgentState) -> None:
    held = {s.id for s in state.schedules}
    for record in ctl.store.schedules(agent):
        if record.id not in held and _expired(ctl, record):
            ctl.store.remove_schedule(record.id)
            ctl.server_event(
                agent, EventKind.SCHEDULE_MISSED,
                f"schedule {record.id} ({record.action.name.lower()} {record.process}) at "
                f"{format_us(record.at_us)} missed: the agent was offline", record.process)


def _definition(entry: ScheduleEntry) -> tuple[object, ...]:
    return (entry.process, entry.action, entry.signal, entry.kind, entry.cron, entry.tz,
            entry.at_us)


async def reconcile(ctl: CommandContext, session: AgentSession, state: AgentState) -> int:
    """Apply the plan; returns the number of corrective steps. Errors are events, not crashes."""
    record_report(ctl, session.name, state)
    report_expired(ctl, session.name, state)
    pushes, commands = plan(ctl, session.name, state)
    steps = 0
    for bundle in pushes:
        steps += await _step(ctl, session, f"bundle {bundle.name}",
                             deliver_or_drop(ctl, session, bundle))
    for command in commands:
        request = session.request(command, ctl.config.request_timeout_s)
        steps += await _step(ctl, session, _describe(command), request)
    if steps:
        logger.info("reconciled %s in %d steps", session.name, steps)
    return steps


def _describe(command: Message) -> str:
    if isinstance(command, ScheduleSet):
        return f"ScheduleSet {command.schedule.id}"
    subject = getattr(command, "name", None) or getattr(command, "id", "")
    return f"{type(command).__name__} {subject}"


async def _step(ctl: CommandContext, session: AgentSession, what: str, work: object) -> int:
    try:
        await work  # type: ignore[misc]
    except LotcError as exc:
        logger.warning("reconciling %s: %s failed: %s", session.name, what, exc)
        ctl.server_event(session.name, EventKind.ERROR, f"reconcile {what}: {exc}")
    return 1
