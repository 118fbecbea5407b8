"""The timestamp an agent puts at the start of every log line, and taking it off again.

Agents stamp each line of a process's output with the UTC time they read it
(`2026-12-02T22:30:01.123456Z text`); the stamp is part of the line in the
files and in LOG_LINES, so it needs no wire field. Lines from agents of the
previous release carry none: `split_timestamp` gives them back whole.
"""
from __future__ import annotations

import re
import time

__all__ = ["split_timestamp", "timestamp"]

_STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z ")
_WIDTH = 27  # without the space that follows


def timestamp(time_us: int) -> bytes:
    """The stamp for `time_us` (UTC microseconds), with its trailing space."""
    seconds, micros = divmod(time_us, 1_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)).encode() + b".%06dZ " % micros


def split_timestamp(line: str) -> tuple[str, str]:
    """('2026-...Z', 'text') for a stamped line; ('', line) for one written without."""
    if _STAMP.match(line):
        return line[:_WIDTH], line[_WIDTH + 1:]
    return "", line
