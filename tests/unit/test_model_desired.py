"""Desired processes, reported statuses and schedules in the server's model (real SQLite)."""
from __future__ import annotations

from dataclasses import replace

import pytest

from lotc.errors import (
    InvalidRequest,
    UnknownProcess,
    UnknownSchedule,
)
from lotc.server.model import Model
from protocol.enums import (
    Action,
    DesiredState,
    ProcessState,
    ScheduleKind,
)
from tests.model_helpers import (  # noqa: F401  (fixtures)
    db_path_fixture,
    model_fixture,
    reopen,
    schedule,
    spec,
    status,
)

# ---------------------------------------------------------------- desired processes


def test_put_process_round_trips_and_assigns_increasing_revisions(model: Model) -> None:
    first = model.put_process(spec())
    assert first.revision >= 1
    assert model.process("web1", "api") == first
    assert first.argv == ("python3", "-m", "app", "--port=80")
    assert first.env == (("MODE", "prod"), ("EMPTY", ""))
    other = model.put_process(spec(agent="web2"))
    again = model.put_process(spec(argv=("sleep", "1")))
    assert first.revision < other.revision < again.revision
    assert model.process("web1", "api").argv == ("sleep", "1")


def test_revision_never_repeats_after_removal_or_restart(model: Model) -> None:
    high = model.put_process(spec()).revision
    assert model.remove_process("web1", "api")
    assert not model.remove_process("web1", "api")
    model = reopen(model)
    try:
        assert model.put_process(spec()).revision > high
    finally:
        model.close()


def test_set_desired_state_keeps_the_revision(model: Model) -> None:
    stored = model.put_process(spec())
    stopped = model.set_desired_state("web1", "api", DesiredState.STOPPED)
    assert stopped == replace(stored, desired=DesiredState.STOPPED)
    exited = model.set_desired_state("web1", "api", DesiredState.EXITED, now_us=9_999)
    assert exited.revision == stored.revision and exited.updated_us == 9_999
    with pytest.raises(UnknownProcess, match="ghost"):
        model.set_desired_state("web1", "ghost", DesiredState.RUNNING)


def test_process_lookups(model: Model) -> None:
    model.put_process(spec(agent="b", name="p2"))
    model.put_process(spec(agent="a", name="p1"))
    model.put_process(spec(agent="b", name="p1"))
    assert [(p.agent, p.name) for p in model.processes()] == [("a", "p1"), ("b", "p1"),
                                                              ("b", "p2")]
    assert [p.name for p in model.processes("b")] == ["p1", "p2"]
    assert [p.agent for p in model.processes(["a"])] == ["a"]
    assert model.find_process("a", "p2") is None
    with pytest.raises(UnknownProcess):
        model.process("a", "p2")
    with pytest.raises(InvalidRequest, match="process name"):
        model.put_process(spec(name=""))


# ---------------------------------------------------------------- reported statuses


def test_process_statuses(model: Model) -> None:
    model.replace_process_statuses("web1", [status(agent=""), status(agent="", name="db")])
    model.replace_process_statuses("web2", [status(agent="web2")])
    assert [(s.agent, s.name) for s in model.process_statuses("web1")] == [("web1", "api"),
                                                                          ("web1", "db")]
    model.replace_process_statuses("web1", [status(agent="", name="db")])
    assert [s.name for s in model.process_statuses("web1")] == ["db"]
    updated = status(name="db", state=ProcessState.STOPPED, updated_us=99)
    model.update_process_status(updated)
    model.update_process_status(status(name="new"))
    assert model.process_statuses("web1")[0] == updated
    assert len(model.process_statuses()) == 3


def test_note_process_state_updates_or_creates_the_status(model: Model) -> None:
    model.update_process_status(status())
    model.note_process_state("web1", "api", ProcessState.EXITED, 3, 0, now_us=500)
    [noted] = model.process_statuses("web1")
    assert (noted.state, noted.exit_code, noted.pid, noted.updated_us, noted.status) == \
        (ProcessState.EXITED, 3, 0, 500, "serving")
    stored = model.put_process(spec(name="fresh", bundle="tool"))
    model.note_process_state("web1", "fresh", ProcessState.STARTING, -1, 0, now_us=600)
    created = model.process_statuses("web1")[1]
    assert (created.name, created.bundle, created.revision, created.state) == \
        ("fresh", "tool", stored.revision, ProcessState.STARTING)


# ---------------------------------------------------------------- schedules


def test_schedules(model: Model) -> None:
    a = model.add_schedule(schedule())
    b = model.add_schedule(schedule(agent="web2", kind=ScheduleKind.AT, cron="", at_us=77,
                                    action=Action.KILL, signal="HUP"))
    assert 0 < a.id < b.id
    assert model.schedules() == [a, b]
    assert model.schedules("web2") == [b] and model.schedule(a.id) == a
    fired = model.update_schedule_fire(a.id, next_fire_us=9_000, last_fire_us=5_000)
    assert (fired.next_fire_us, fired.last_fire_us) == (9_000, 5_000)
    assert model.remove_schedule(a.id) == fired
    with pytest.raises(UnknownSchedule, match=str(a.id)):
        model.remove_schedule(a.id)
    with pytest.raises(UnknownSchedule):
        model.update_schedule_fire(a.id, 1, 1)
    with pytest.raises(UnknownSchedule):
        model.schedule(a.id)
    assert model.add_schedule(schedule()).id > b.id  # ids are never reused


def test_schedule_ids_are_not_reused_after_a_restart(model: Model) -> None:
    last = model.add_schedule(schedule())
    model.remove_schedule(last.id)
    model = reopen(model)
    try:
        assert model.add_schedule(schedule()).id > last.id
    finally:
        model.close()
