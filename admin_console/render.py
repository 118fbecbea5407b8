"""Output for people (aligned tables, sizes, relative times) and for scripts (JSON).

JSON conventions, the same for every command: enums by name, bytes as hex,
and every timestamp field `X_us` kept raw and joined by `X` as ISO-8601 UTC
(null when the raw value is 0, "never"). Clock offsets and delays end in
`_us` too but are durations, not times, so they stay numbers only. The wire's
"none" markers (exit code -1, pid 0...) are null: a script must not mistake
them for values. Each command prints one document on one line, so the output
of `-c "ps; agents"` is JSON Lines.
"""
from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from enum import Enum
from typing import Any

NOT_TIMES = frozenset({"clock_offset_us", "clock_delay_us", "offset_us", "delay_us"})
# Integer fields whose wire value means "none" (protocol/spec.py says which): null in JSON.
NONE_MARKERS = {"exit_code": -1, "pid": 0, "exit_signal": 0, "signal": 0}
_SIZE_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


# ---------------------------------------------------------------- tables


def table(headers: Sequence[str] | None, rows: Iterable[Sequence[object]],
          right: Iterable[int] = ()) -> str:
    """Columns padded to their widest cell; indexes in `right` are right-aligned.

    `headers` None prints the rows alone (result lines read better bare).
    """
    cells = [[_cell(c) for c in row] for row in rows]
    if headers is not None:
        cells.insert(0, [str(h) for h in headers])
    if not cells:
        return ""
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    right_set = set(right)
    lines = []
    for row in cells:
        parts = [c.rjust(w) if i in right_set else c.ljust(w)
                 for i, (c, w) in enumerate(zip(row, widths, strict=True))]
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines)


def _cell(value: object) -> str:
    if value is None:
        return "-"
    return str(value).replace("\n", " ")


def human_size(size: float) -> str:
    """1536 -> '1.5 KiB'; bytes stay whole."""
    value = float(size)
    for unit in _SIZE_UNITS:
        if abs(value) < 1024 or unit == _SIZE_UNITS[-1]:
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def human_duration(seconds: float) -> str:
    """3725 -> '1h2m'; the two largest units, as `ps` and `agents` show ages."""
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{secs}s" if secs else f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{minutes}m" if minutes else f"{hours}h"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours}h" if hours else f"{days}d"


def count_of(count: int, noun: str, plural: str = "") -> str:
    """'1 process', '2 processes', '0 agents': the noun agrees with the number."""
    return f"{count} {noun if count == 1 else plural or noun + 's'}"


def ago(time_us: int, now_us: int) -> str:
    """'2s ago', 'never' for 0, 'in 5s' for a time ahead of now (a skewed clock)."""
    if time_us <= 0:
        return "never"
    delta = (now_us - time_us) / 1e6
    if delta < 0:
        return f"in {human_duration(-delta)}"
    return f"{human_duration(delta)} ago"


def iso_time(time_us: int) -> str | None:
    """ISO-8601 UTC with a Z, or None for 0 ("never")."""
    if time_us <= 0:
        return None
    moment = datetime.fromtimestamp(time_us / 1e6, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def short_time(time_us: int) -> str:
    """'2024-05-01 12:00:03Z' for event lines; '-' for 0."""
    if time_us <= 0:
        return "-"
    return datetime.fromtimestamp(time_us / 1e6, tz=UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def enum_word(value: Enum) -> str:
    """ON_FAILURE -> 'on-failure': how enums read in tables and on the command line."""
    return value.name.lower().replace("_", "-")


# ---------------------------------------------------------------- json


def to_json(value: Any) -> Any:
    """Messages, entries and plain values -> JSON-ready objects, by the module's rules."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _fields_to_json({f.name: getattr(value, f.name) for f in dataclasses.fields(value)})
    if isinstance(value, Mapping):
        return _fields_to_json(value)
    if isinstance(value, Enum):
        return value.name
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).hex()
    if isinstance(value, (list, tuple)):
        return [to_json(item) for item in value]
    return value


def _fields_to_json(fields: Mapping[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for name, raw in fields.items():
        if name.endswith("_us") and name not in NOT_TIMES and isinstance(raw, int):
            result[name[:-3]] = iso_time(raw)
        is_none = (isinstance(raw, int) and not isinstance(raw, bool)
                   and NONE_MARKERS.get(name) == raw)
        result[name] = None if is_none else to_json(raw)
    return result


def dumps(document: Any) -> str:
    """One JSON document (a command's whole output) on one line: JSON Lines across commands."""
    return dumps_line(document)


def dumps_line(document: Any) -> str:
    """One JSON document on one line: a follow stream prints one per item (JSON Lines)."""
    return json.dumps(to_json(document), ensure_ascii=False, separators=(",", ":"))
