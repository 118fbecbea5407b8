"""Schedules on the server: validate, record as desired state, hand to the agents.

The agents own the firing (so schedules run while the server is away); the
server keeps the list, gives ids, and reconciles it on every connect like
bundles and processes. When a schedule fires, the agent's event names it,
and the controller moves the process's desired state the way the action does
(desired.desired_after_fire): otherwise the next reconcile would undo a
scheduled stop.
"""
from __future__ import annotations

import logging

from lotc.errors import InvalidRequest, UnknownProcess
from lotc.names import validate_name
from lotc.parse.crontimes import format_us, next_fire, validate
from lotc.server.command_context import CommandContext
from lotc.server.desired import signal_number
from lotc.server.fanout import fan_out
from lotc.server.processes import QUEUED
from lotc.server.records import ScheduleRecord
from protocol.enums import Action, ScheduleKind
from protocol.messages import AgentResult, ScheduleClear, ScheduleEntry, ScheduleSet

logger = logging.getLogger(__name__)

PAST_TOLERANCE_US = 5_000_000  # an `at` this close to now still fires (network delay)

def entry_of(record: ScheduleRecord) -> ScheduleEntry:
    return ScheduleEntry(
        id=record.id, agent=record.agent, process=record.process, action=record.action,
        signal=record.signal, kind=record.kind, cron=record.cron, tz=record.tz,
        at_us=record.at_us, next_fire_us=record.next_fire_us, last_fire_us=record.last_fire_us,
    )


async def set_schedule(ctl: CommandContext, msg: ScheduleSet) -> list[AgentResult]:
    entry = msg.schedule
    validate_name("process", entry.process)
    validate(entry)  # cron syntax, time zone, or a time: InvalidRequest in plain words
    if entry.action == Action.KILL:
        signal_number(entry.signal)
    if entry.kind == ScheduleKind.AT and entry.at_us < ctl.now_us() - PAST_TOLERANCE_US:
        raise InvalidRequest(f"{format_us(entry.at_us)} is in the past")
    targets = ctl.resolve_targets(msg.target)

    async def add(agent: str) -> str:
        if ctl.store.find_process(agent, entry.process) is None:
            raise UnknownProcess(f"no process {entry.process!r} on {agent}: start it first, "
                                 "then schedule it")
        now = ctl.now_us()
        record = ctl.store.add_schedule(ScheduleRecord(
            id=0, agent=agent, process=entry.process, action=entry.action, signal=entry.signal,
            kind=entry.kind, cron=entry.cron, tz=entry.tz, at_us=entry.at_us,
            next_fire_us=next_fire(entry, now) or 0, last_fire_us=0, created_us=now,
        ))
        session = ctl.session(agent)
        if session is None:
            return f"schedule {record.id} recorded; {QUEUED}"
        try:
            await session.request(ScheduleSet(target="", schedule=entry_of(record)),
                                  ctl.config.request_timeout_s)
        except Exception:
            ctl.store.remove_schedule(record.id)  # refused: leave nothing half-done
            raise
        return f"schedule {record.id} set"

    return await fan_out(targets, add)


async def clear_schedule(ctl: CommandContext, msg: ScheduleClear) -> list[AgentResult]:
    record = ctl.store.remove_schedule(msg.id)  # UnknownSchedule in plain words

    async def clear(agent: str) -> str:
        session = ctl.session(agent)
        if session is None:
            return f"schedule {record.id} removed; {QUEUED}"
        await session.request(ScheduleClear(target="", id=record.id),
                              ctl.config.request_timeout_s)
        return f"schedule {record.id} removed"

    return await fan_out([record.agent], clear)
