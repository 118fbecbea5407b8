"""Schedules on the agent: their records and their file in the state dir.

The scheduler keeps one JSON file, `schedules.json`, rewritten whole on each
change (a few hundred bytes per schedule): written to a temporary file,
fsynced, renamed over the old one, and the directory fsynced, so after a
crash the file is either the old or the new version, never a torn one. It
holds each schedule's spec, its planned next fire and its last fire: the
planned next fire is what lets a restarted agent tell which fires it missed
while it was down. A file that cannot be read is set aside (renamed with a
`.corrupt-<time>` suffix) rather than deleted, and the agent starts with no
schedules: the server pushes its desired state again on reconnect.
"""
from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from lotc.parse.crontimes import format_us
from protocol.enums import Action, EventKind, ScheduleKind

__all__ = [
    "FILE_NAME", "ScheduleEventInfo", "ScheduleSpec", "ScheduleState", "load_states",
    "save_states",
]

logger = logging.getLogger(__name__)

FILE_NAME = "schedules.json"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class ScheduleSpec:
    """One schedule as the admin asked for it (ids are assigned by the server)."""

    id: int
    process: str
    action: Action
    signal: str = ""  # kill only: signal name, empty for SIGKILL
    kind: ScheduleKind = ScheduleKind.CRON
    cron: str = ""  # kind CRON
    tz: str = ""  # IANA zone for cron, empty for UTC
    at_us: int = 0  # kind AT: UTC microseconds


@dataclass(frozen=True)
class ScheduleState:
    spec: ScheduleSpec
    next_fire_us: int = 0  # 0: nothing planned (a one-shot that fired or was skipped)
    last_fire_us: int = 0  # planned time of the last fire, 0 when never fired


@dataclass(frozen=True)
class ScheduleEventInfo:
    """What the scheduler reports; the agent turns it into an EVENT frame."""

    kind: EventKind  # SCHEDULE_FIRED or SCHEDULE_MISSED
    schedule_id: int
    process: str
    action: Action
    target_us: int  # FIRED: the planned time; MISSED: the first missed fire
    time_us: int  # corrected clock when it fired, or when the miss was noticed
    missed: int = 0  # MISSED: how many fires were missed (at least, when `missed_capped`)
    missed_capped: bool = False
    last_missed_us: int = 0
    next_fire_us: int = 0
    late: bool = False  # FIRED: later than planned by more than the scheduler's LATE limit
    unsynced: bool = False  # FIRED on a clock that has never been synced with NTP
    error: str = ""  # FIRED: why the action failed, empty on success

    @property
    def error_us(self) -> int:
        """How late the fire was against the corrected clock (FIRED)."""
        return self.time_us - self.target_us

    def message(self) -> str:
        """Plain words for the EVENT frame and the console's `events`."""
        head = f"schedule {self.schedule_id} ({self.action.name.lower()} {self.process})"
        if self.kind == EventKind.SCHEDULE_MISSED:
            count = f"at least {self.missed}" if self.missed_capped else str(self.missed)
            span = format_us(self.target_us)
            if self.missed > 1:
                span += f" to {format_us(self.last_missed_us)}"
            plural = "s" if self.missed != 1 else ""
            tail = f"; next at {format_us(self.next_fire_us)}" if self.next_fire_us else ""
            return f"{head}: missed {count} fire{plural} ({span}), agent down or clock jumped{tail}"
        words = [f"{head}: fired for {format_us(self.target_us)}, {self.error_us / 1000:+.1f} ms"]
        if self.late:
            words.append("LATE")
        if self.unsynced:
            words.append("on an UNSYNCED clock")
        words.append(f"failed: {self.error}" if self.error else "ok")
        return ", ".join(words)


# ---------------------------------------------------------------- the file

def _encode(state: ScheduleState) -> dict[str, Any]:
    spec = asdict(state.spec)
    spec["action"] = state.spec.action.name
    spec["kind"] = state.spec.kind.name
    return {"spec": spec, "next_fire_us": state.next_fire_us,
            "last_fire_us": state.last_fire_us}


def _decode(item: dict[str, Any]) -> ScheduleState:
    raw = dict(item["spec"])
    known = {f.name for f in fields(ScheduleSpec)}
    raw = {key: value for key, value in raw.items() if key in known}
    raw["action"] = Action[raw["action"]]
    raw["kind"] = ScheduleKind[raw["kind"]]
    spec = ScheduleSpec(**raw)
    if not isinstance(spec.id, int) or not isinstance(spec.at_us, int):
        raise TypeError("id and at_us must be integers")
    return ScheduleState(spec, int(item.get("next_fire_us", 0)), int(item.get("last_fire_us", 0)))


def save_states(state_dir: Path, states: list[ScheduleState]) -> None:
    """Atomically replace the schedules file (blocking: call it from a worker thread)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    data = json.dumps({"version": FORMAT_VERSION, "schedules": [_encode(s) for s in states]},
                      indent=1, sort_keys=True).encode()
    final = state_dir / FILE_NAME
    temporary = state_dir / f".{FILE_NAME}.tmp"
    with open(temporary, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, final)
    directory = os.open(state_dir, os.O_RDONLY)
    try:
        os.fsync(directory)  # make the rename itself durable
    finally:
        os.close(directory)


def load_states(state_dir: Path) -> list[ScheduleState]:
    """Read the schedules file; an absent file means none; a bad one is set aside."""
    path = state_dir / FILE_NAME
    try:
        document = json.loads(path.read_bytes())
        items = document["schedules"]
        if document.get("version") != FORMAT_VERSION or not isinstance(items, list):
            raise ValueError(f"unsupported format {document.get('version')!r}")
    except FileNotFoundError:
        return []
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        _set_aside(path, exc)
        return []
    states = []
    for item in items:
        try:
            states.append(_decode(item))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            logger.error("skipping an unreadable schedule in %s: %s (%r)", path, exc, item)
    return states


def _set_aside(path: Path, exc: BaseException) -> None:
    keep = path.with_name(f"{path.name}.corrupt-{int(time.time())}")
    logger.error("cannot read %s (%s): keeping it as %s and starting with no schedules; "
                 "the server will push them again", path, exc, keep.name)
    try:
        os.replace(path, keep)
    except OSError as rename_error:
        logger.error("could not set %s aside: %s", path, rename_error)
