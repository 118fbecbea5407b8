"""Shared parts of the model tests (tests/unit/test_model_*.py): a real SQLite file,
records with sensible defaults, and a restart.

Import the fixtures with `from tests.model_helpers import db_path_fixture, model_fixture  # noqa: F401`.
"""
from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from lotc.server.model import Model, Retention
from lotc.server.records import (
    EventRecord,
    ProcessSpecRecord,
    ProcessStatusRecord,
    ScheduleRecord,
    StatsRecord,
)
from protocol.enums import (
    Action,
    DesiredState,
    EventKind,
    ProcessState,
    RestartPolicy,
    ScheduleKind,
)

SHA_A = hashlib.sha256(b"bundle a").digest()
SHA_B = hashlib.sha256(b"bundle b").digest()


@pytest.fixture(name="db_path")
def db_path_fixture(tmp_path: Path) -> Path:
    return tmp_path / "lotc.db"


@pytest.fixture(name="model")
def model_fixture(db_path: Path) -> Iterator[Model]:
    m = Model(db_path)
    try:
        yield m
    finally:
        m.close()


def reopen(model: Model, retention: Retention | None = None) -> Model:
    """A server restart: close the file and open it again."""
    model.close()
    return Model(model.path, retention or model.retention)


def spec(agent: str = "web1", name: str = "api", **changes: object) -> ProcessSpecRecord:
    base = ProcessSpecRecord(
        agent=agent, name=name, bundle="app", argv=("python3", "-m", "app", "--port=80"),
        env=(("MODE", "prod"), ("EMPTY", "")), cwd="", restart=RestartPolicy.ON_FAILURE,
        liveness_ms=5000, grace_ms=3000, backoff_base_ms=100, backoff_cap_ms=30_000,
        restart_limit=5, restart_window_s=60, desired=DesiredState.RUNNING, revision=0,
        updated_us=1_000,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def status(agent: str = "web1", name: str = "api", **changes: object) -> ProcessStatusRecord:
    base = ProcessStatusRecord(
        agent=agent, name=name, bundle="app", revision=1, state=ProcessState.RUNNING, pid=4242,
        exit_code=-1, exit_signal=0, restarts=0, started_us=10, last_liveness_us=20,
        status="serving", updated_us=30,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def event(agent: str = "web1", seq: int | None = 1, **changes: object) -> EventRecord:
    base = EventRecord(
        id=0, agent=agent, seq=seq, time_us=1_000, kind=EventKind.PROCESS_STATE, process="api",
        old_state=ProcessState.STARTING, new_state=ProcessState.RUNNING, exit_code=-1, signal=0,
        message="",
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def schedule(agent: str = "web1", **changes: object) -> ScheduleRecord:
    base = ScheduleRecord(
        id=0, agent=agent, process="api", action=Action.RESTART, signal="",
        kind=ScheduleKind.CRON, cron="0 3 * * *", tz="Europe/Paris", at_us=0,
        next_fire_us=5_000, last_fire_us=0, created_us=100,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def stats(agent: str, time_us: int) -> StatsRecord:
    return StatsRecord(agent, time_us, {"cpu_percent": 12.5, "mem_used": 1 << 30},
                       [{"name": "api", "pid": 7, "rss": 123, "cpu_percent": 1.5}])
