"""How actions move a process's desired state (shared by commands and schedules)."""
from __future__ import annotations

import signal as signals

from lotc.parse.signals import parse_signal
from lotc.server.records import ScheduleRecord
from protocol.enums import Action, DesiredState

DESIRED_AFTER_ACTION = {
    Action.START: DesiredState.RUNNING,
    Action.RESUME: DesiredState.RUNNING,
    Action.RESTART: DesiredState.RUNNING,
    Action.STOP: DesiredState.STOPPED,
    Action.TERMINATE: DesiredState.EXITED,
}


def signal_number(name: str) -> int:
    """`SIGHUP`, `HUP`, `hup` or `1` -> 1; "" -> SIGKILL (kill's default); else InvalidRequest."""
    return int(parse_signal(name)) if name.strip() else int(signals.SIGKILL)


def desired_after_fire(record: ScheduleRecord) -> DesiredState | None:
    """The desired state a fired schedule leaves its process in (None: unchanged)."""
    if record.action == Action.KILL:
        return DesiredState.EXITED if signal_number(record.signal) == signals.SIGKILL else None
    return DESIRED_AFTER_ACTION.get(record.action)
