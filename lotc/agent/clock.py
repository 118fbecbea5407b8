"""The agent's notion of "now": the local clock corrected by the measured NTP offset.

timesync.py measures the offset and stores it here; everything on the agent
that stamps or schedules (events, heartbeats, schedules) reads `now_us`.
Until a measurement exists the offset is 0 and `synced` is False, which the
server shows in `agents` so nobody mistakes an unsynced clock for a good one.
"""
from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass
class ClockSample:
    source: str = ""  # NTP server that answered; empty when none has
    offset_us: int = 0  # add to the local clock to get the corrected time
    delay_us: int = 0  # round trip of the chosen sample
    stratum: int = 0
    measured_us: int = 0  # corrected time of the measurement, 0 when never


class CorrectedClock:
    def __init__(self) -> None:
        self.sample = ClockSample()

    @property
    def synced(self) -> bool:
        return self.sample.measured_us != 0

    def now_us(self) -> int:
        return time.time_ns() // 1000 + self.sample.offset_us

    def update(self, sample: ClockSample) -> None:
        self.sample = sample
