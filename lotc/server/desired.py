"""How a fired schedule moves its process's desired state (the rule is lotc.actions')."""
from __future__ import annotations

import signal as signals

from lotc.actions import for_action
from lotc.parse.signals import parse_signal
from lotc.server.records import ScheduleRecord
from protocol.enums import DesiredState


def signal_number(name: str) -> int:
    """`SIGHUP`, `HUP`, `hup` or `1` -> 1; "" -> SIGKILL (kill's default); else InvalidRequest."""
    return int(parse_signal(name)) if name.strip() else int(signals.SIGKILL)


def desired_after_fire(record: ScheduleRecord) -> DesiredState | None:
    """The desired state a fired schedule leaves its process in (None: unchanged)."""
    return for_action(record.action).desired_after(signal_number(record.signal))
