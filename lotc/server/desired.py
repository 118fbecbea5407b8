"""How actions move a process's desired state (shared by commands and schedules)."""
from __future__ import annotations

import signal as signals

from lotc.errors import InvalidRequest
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
    """`SIGHUP`, `HUP`, `hup` or `1` -> 1; InvalidRequest in plain words otherwise."""
    text = name.strip().upper()
    if not text:
        return int(signals.SIGKILL)
    if text.isdigit():
        number = int(text)
        if number in {int(s) for s in signals.Signals}:
            return number
    else:
        try:
            return int(signals.Signals[text if text.startswith("SIG") else "SIG" + text])
        except KeyError:
            pass
    raise InvalidRequest(f"unknown signal {name!r}: use a name such as SIGTERM, HUP or USR1")


def desired_after_fire(record: ScheduleRecord) -> DesiredState | None:
    """The desired state a fired schedule leaves its process in (None: unchanged)."""
    if record.action == Action.KILL:
        return DesiredState.EXITED if signal_number(record.signal) == signals.SIGKILL else None
    return DESIRED_AFTER_ACTION.get(record.action)
