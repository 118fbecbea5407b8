from __future__ import annotations

import json
from pathlib import Path

import pytest

from lotc.agent.schedule_store import (
    FILE_NAME,
    ScheduleSpec,
    ScheduleState,
    load_states,
    save_states,
)
from lotc.parse.crontimes import format_us
from protocol.enums import Action, ScheduleKind

STATES = [
    ScheduleState(ScheduleSpec(1, "web", Action.RESTART, cron="0 2 * * *", tz="Europe/Paris"),
                  next_fire_us=1_717_200_000_000_000, last_fire_us=1_717_113_600_000_000),
    ScheduleState(ScheduleSpec(2, "db", Action.KILL, "SIGTERM", ScheduleKind.AT,
                               at_us=1_717_300_000_123_456)),
]


def test_round_trip(tmp_path: Path) -> None:
    save_states(tmp_path / "state", STATES)
    assert load_states(tmp_path / "state") == STATES
    assert not list((tmp_path / "state").glob(".*.tmp"))  # the temporary file was renamed


def test_missing_file_means_no_schedules(tmp_path: Path) -> None:
    assert load_states(tmp_path) == []


@pytest.mark.parametrize("content", [b"", b"{", b"[]", b'{"version": 99, "schedules": []}',
                                     b'{"version": 1, "schedules": {}}', b"\xff\xfe"])
def test_unreadable_file_is_set_aside(tmp_path: Path, content: bytes) -> None:
    (tmp_path / FILE_NAME).write_bytes(content)
    assert load_states(tmp_path) == []
    kept = list(tmp_path.glob(f"{FILE_NAME}.corrupt-*"))
    assert len(kept) == 1 and kept[0].read_bytes() == content
    assert not (tmp_path / FILE_NAME).exists()


def test_a_bad_entry_is_skipped_and_unknown_fields_are_ignored(tmp_path: Path) -> None:
    save_states(tmp_path, STATES)
    document = json.loads((tmp_path / FILE_NAME).read_text())
    document["schedules"][0]["spec"]["added_in_a_later_version"] = True
    document["schedules"].append({"spec": {"id": 3, "action": "EXPLODE"}})
    (tmp_path / FILE_NAME).write_text(json.dumps(document))
    assert load_states(tmp_path) == STATES


def test_format_us() -> None:
    assert format_us(1_717_243_230_123_456) == "2024-06-01T12:00:30.123Z"
