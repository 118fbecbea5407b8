"""Durations as people type them: `90`, `30s`, `10m`, `2h`, `1d`, `1w`, `500ms`."""
from __future__ import annotations

import re

from lotc.errors import InvalidRequest

__all__ = ["DURATION_HELP", "parse_duration"]

_DURATION = re.compile(r"(?P<number>\d+(?:\.\d+)?)(?P<unit>ms|s|m|h|d|w)?")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
DURATION_HELP = "use a number with s, m, h or d, e.g. 10m"


def parse_duration(text: str) -> float:
    """`90`, `30s`, `10m`, `2h`, `1d`, `500ms` -> seconds; InvalidRequest otherwise."""
    match = _DURATION.fullmatch(text.strip().lower())
    if match is None:
        # the input is not echoed: it may be huge; callers that can show it cut do
        raise InvalidRequest(f"bad duration: {DURATION_HELP}")
    return float(match["number"]) * _UNIT_SECONDS[match["unit"] or "s"]
