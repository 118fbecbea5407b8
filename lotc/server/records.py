"""What the server's model stores, as frozen dataclasses.

The model returns these and takes them back; nothing else of SQLite leaks
out. Times are ints of UTC microseconds (`*_us`); 0 means "never" except
where a field says None. Enum fields hold the enums of protocol.enums.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from protocol.enums import (
    Action,
    BundleKind,
    DesiredState,
    EventKind,
    ProcessState,
    RestartPolicy,
    Role,
    ScheduleKind,
)

__all__ = [
    "AgentRecord",
    "BundleRecord",
    "EventRecord",
    "LabelRecord",
    "ProcessSpecRecord",
    "ProcessStatusRecord",
    "ScheduleRecord",
    "StatsRecord",
    "TokenRecord",
]


@dataclass(frozen=True)
class TokenRecord:
    """A token's metadata; the token itself is never stored (only its SHA-256)."""

    name: str
    role: Role
    created_us: int
    revoked_us: int | None  # None while the token is live


@dataclass(frozen=True)
class AgentRecord:
    name: str
    hostname: str
    address: str
    version: str
    online: bool
    first_seen_us: int
    last_seen_us: int
    connected_us: int
    clock_source: str = ""  # NTP server the offset was measured against; "" = unsynced
    clock_offset_us: int = 0
    clock_delay_us: int = 0
    clock_measured_us: int = 0
    last_event_seq: int = 0  # highest agent event seq stored (acknowledges all up to it)


@dataclass(frozen=True)
class BundleRecord:
    """A bundle wanted on (desired) or held by (reported) an agent."""

    agent: str
    name: str
    sha256: bytes
    kind: BundleKind
    size: int
    stored_us: int


@dataclass(frozen=True)
class ProcessSpecRecord:
    """A process the admin asked for: what to run and what state it should be in."""

    agent: str
    name: str
    bundle: str
    argv: tuple[str, ...]
    env: tuple[tuple[str, str], ...]
    cwd: str
    restart: RestartPolicy
    liveness_ms: int
    grace_ms: int
    backoff_base_ms: int
    backoff_cap_ms: int
    restart_limit: int
    restart_window_s: int
    desired: DesiredState
    revision: int  # assigned by the model on every put; 0 in a record not yet stored
    updated_us: int
    # lotc.options keys and canonical values (log-size, log-keep...), sorted by key
    options: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class ProcessStatusRecord:
    """What an agent last reported about one of its processes."""

    agent: str
    name: str
    bundle: str
    revision: int
    state: ProcessState
    pid: int
    exit_code: int
    exit_signal: int
    restarts: int
    started_us: int
    last_liveness_us: int
    status: str
    updated_us: int


@dataclass(frozen=True)
class ScheduleRecord:
    id: int  # assigned by the model; 0 in a record not yet stored
    agent: str
    process: str
    action: Action
    signal: str  # for kill: signal name, "" for SIGKILL
    kind: ScheduleKind
    cron: str
    tz: str
    at_us: int
    next_fire_us: int
    last_fire_us: int
    created_us: int


@dataclass(frozen=True)
class EventRecord:
    id: int  # assigned by the model; 0 in a record not yet stored
    agent: str
    seq: int | None  # the agent's sequence number; None for events the server makes
    time_us: int
    kind: EventKind
    process: str
    old_state: ProcessState
    new_state: ProcessState
    exit_code: int
    signal: int
    message: str
    schedule_id: int = 0  # the schedule that acted (SCHEDULE_FIRED), else 0


@dataclass(frozen=True)
class StatsRecord:
    """One stats sample of an agent: node figures and per-process figures."""

    agent: str
    time_us: int
    node: dict[str, float | int] = field(hash=False)
    processes: list[dict[str, Any]] = field(hash=False)


@dataclass(frozen=True)
class LabelRecord:
    """One agent's labels: its own (`--label`, as it said at its last connect) and the
    console's, which win for the same key (lotc.selectors.effective_labels)."""

    agent: str
    announced: dict[str, str] = field(default_factory=dict)
    console: dict[str, str] = field(default_factory=dict)
