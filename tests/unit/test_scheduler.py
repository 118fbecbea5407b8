from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest
import trio
import trio.testing

from lotc.agent import scheduler as scheduler_module
from lotc.agent.clock import ClockSample, CorrectedClock
from lotc.agent.schedule_store import ScheduleEventInfo
from lotc.agent.scheduler import Scheduler, ScheduleSpec
from lotc.agent.timesync import TimeSync
from lotc.errors import InvalidRequest, UnknownProcess, UnknownSchedule
from lotc.sntp import serve_sntp
from protocol.enums import Action, EventKind, ScheduleKind

S = 1_000_000
MINUTE = 60 * S
WAIT_S = 10 * 24 * 3600.0  # virtual seconds: generous, costs nothing under the autojump clock
REAL_WAIT_S = 10.0


def _utc(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()) * S


class VirtualClock(CorrectedClock):
    """A corrected clock that follows trio's clock (MockClock in these tests)."""

    def __init__(self, start_us: int, *, offset_us: int = 0, synced: bool = True) -> None:
        super().__init__()
        self._origin_us = start_us - round(trio.current_time() * S)
        if synced:
            self.update(ClockSample("test:123", offset_us, 100, 1, start_us + offset_us))
        else:
            self.sample = ClockSample(offset_us=offset_us)

    def now_us(self) -> int:
        return self._origin_us + round(trio.current_time() * S) + self.sample.offset_us

    def local_us(self) -> int:
        return self._origin_us + round(trio.current_time() * S)


async def inline_io(function: Callable[..., object], *args: object) -> object:
    """Run file I/O on the trio thread: the autojump clock would jump while a thread runs."""
    return function(*args)


class Harness:
    def __init__(self, state_dir: Path, clock: CorrectedClock, **kwargs: object) -> None:
        self.fired: list[tuple[ScheduleSpec, int]] = []
        self.fail: Callable[[ScheduleSpec], Awaitable[None]] | None = None
        self._send, self.events = trio.open_memory_channel[ScheduleEventInfo](1000)
        self.clock = clock
        kwargs.setdefault("run_io", inline_io)
        self.scheduler = Scheduler(state_dir, clock, self._fire, self._send.send_nowait,
                                   **kwargs)  # type: ignore[arg-type]

    async def _fire(self, spec: ScheduleSpec) -> None:
        self.fired.append((spec, self.clock.now_us()))
        if self.fail is not None:
            await self.fail(spec)

    async def next_event(self, wait_s: float = WAIT_S) -> ScheduleEventInfo:
        with trio.fail_after(wait_s):
            return await self.events.receive()

    @asynccontextmanager
    async def running(self) -> AsyncIterator[Scheduler]:
        async with trio.open_nursery() as nursery:
            await nursery.start(self.scheduler.run)
            yield self.scheduler
            nursery.cancel_scope.cancel()


def cron(schedule_id: int, expr: str, tz: str = "", action: Action = Action.RESTART,
         process: str = "web") -> ScheduleSpec:
    return ScheduleSpec(schedule_id, process, action, kind=ScheduleKind.CRON, cron=expr, tz=tz)


def at(schedule_id: int, at_us: int, action: Action = Action.STOP,
       process: str = "web") -> ScheduleSpec:
    return ScheduleSpec(schedule_id, process, action, kind=ScheduleKind.AT, at_us=at_us)


NOON = _utc("2024-06-01T12:00:30")


# ------------------------------------------------------------------ firing

async def test_at_fires_on_the_corrected_clock_not_the_local_one(
    tmp_path: Path, autojump_clock: trio.testing.MockClock,
) -> None:
    clock = VirtualClock(NOON, offset_us=150 * S)  # local clock 150 s behind
    harness = Harness(tmp_path, clock)
    target = clock.now_us() + 10 * S
    started = trio.current_time()
    async with harness.running() as scheduler:
        await scheduler.set(at(1, target))
        event = await harness.next_event()
    assert event.kind == EventKind.SCHEDULE_FIRED and event.schedule_id == 1
    assert event.target_us == target and 0 <= event.error_us < 1000
    assert not event.late and not event.unsynced and event.error == ""
    assert trio.current_time() - started == pytest.approx(10, abs=0.01)
    assert [spec.id for spec, _ in harness.fired] == [1]
    assert scheduler.list()[0].next_fire_us == 0
    assert scheduler.list()[0].last_fire_us == target


async def test_cron_fires_every_minute(
    tmp_path: Path, autojump_clock: trio.testing.MockClock,
) -> None:
    harness = Harness(tmp_path, VirtualClock(NOON))
    async with harness.running() as scheduler:
        await scheduler.set(cron(7, "* * * * *"))
        events = [await harness.next_event() for _ in range(3)]
    assert [e.target_us for e in events] == [_utc("2024-06-01T12:01"), _utc("2024-06-01T12:02"),
                                             _utc("2024-06-01T12:03")]
    assert all(0 <= e.error_us < 1000 and e.next_fire_us == e.target_us + MINUTE
               for e in events)


async def test_repeated_hour_fires_once(
    tmp_path: Path, autojump_clock: trio.testing.MockClock,
) -> None:
    harness = Harness(tmp_path, VirtualClock(_utc("2024-11-03T04:00")))
    async with harness.running() as scheduler:
        await scheduler.set(cron(1, "30 1 * * *", tz="America/New_York"))
        first = await harness.next_event()
        second = await harness.next_event()
    assert first.target_us == _utc("2024-11-03T05:30")  # 01:30 EDT
    assert second.target_us == _utc("2024-11-04T06:30")  # 01:30 EST the next day


@pytest.mark.parametrize(("jump_s", "fires_after_s"), [(30, 30), (-20, 80)])
async def test_offset_change_replans_and_never_fires_early(
    tmp_path: Path, autojump_clock: trio.testing.MockClock, jump_s: int, fires_after_s: int,
) -> None:
    clock = VirtualClock(NOON)
    harness = Harness(tmp_path, clock)
    target = clock.now_us() + 60 * S
    started = trio.current_time()
    async with harness.running() as scheduler:
        await scheduler.set(at(1, target))
        await trio.sleep(10)
        clock.update(ClockSample("test:123", jump_s * S, 100, 1, clock.now_us()))
        scheduler.clock_changed()
        event = await harness.next_event()
    assert trio.current_time() - started == pytest.approx(fires_after_s, abs=0.01)
    assert event.target_us == target and 0 <= event.error_us < 1000


async def test_cleared_schedule_does_not_fire(
    tmp_path: Path, autojump_clock: trio.testing.MockClock,
) -> None:
    clock = VirtualClock(NOON)
    harness = Harness(tmp_path, clock)
    async with harness.running() as scheduler:
        await scheduler.set(at(1, clock.now_us() + 10 * S))
        await scheduler.set(at(2, clock.now_us() + 20 * S))
        await scheduler.clear(1)
        event = await harness.next_event()
    assert event.schedule_id == 2 and [s.id for s, _ in harness.fired] == [2]
    assert [state.spec.id for state in scheduler.list()] == [2]


async def test_schedules_fire_together_and_a_slow_action_delays_nothing(
    tmp_path: Path, autojump_clock: trio.testing.MockClock,
) -> None:
    clock = VirtualClock(NOON)
    harness = Harness(tmp_path, clock)

    async def slow(spec: ScheduleSpec) -> None:
        if spec.id == 1:
            await trio.sleep(30)

    harness.fail = slow
    target = clock.now_us() + 5 * S
    async with harness.running() as scheduler:
        for schedule_id in (1, 2, 3):
            await scheduler.set(at(schedule_id, target))
        events = [await harness.next_event() for _ in range(3)]
    ids = [e.schedule_id for e in events]
    assert sorted(ids[:2]) == [2, 3] and ids[2] == 1  # 1 reports when its action is done
    assert all(fired_us == target for _, fired_us in harness.fired)


# ------------------------------------------------------------------ failures

async def test_failing_action_is_reported_and_schedules_go_on(
    tmp_path: Path, autojump_clock: trio.testing.MockClock,
) -> None:
    harness = Harness(tmp_path, VirtualClock(NOON), action_timeout_s=5.0)
    outcomes = iter([RuntimeError("boom"), UnknownProcess("no process 'web'"), "hang", None])

    async def flaky(spec: ScheduleSpec) -> None:
        outcome = next(outcomes)
        if outcome == "hang":
            await trio.sleep_forever()
        if isinstance(outcome, Exception):
            raise outcome

    harness.fail = flaky
    async with harness.running() as scheduler:
        await scheduler.set(cron(1, "* * * * *"))
        events = [await harness.next_event() for _ in range(4)]
    assert "RuntimeError: boom" in events[0].error
    assert events[1].error == "no process 'web'"
    assert "within 5 s" in events[2].error
    assert events[3].error == "" and "ok" in events[3].message()
    assert "failed: no process 'web'" in events[1].message()


async def test_broken_event_hook_does_not_stop_schedules(
    tmp_path: Path, autojump_clock: trio.testing.MockClock,
) -> None:
    fired: list[int] = []

    async def fire(spec: ScheduleSpec) -> None:
        fired.append(spec.id)

    def broken(info: ScheduleEventInfo) -> None:
        raise RuntimeError("outbox closed")

    clock = VirtualClock(NOON)
    scheduler = Scheduler(tmp_path, clock, fire, broken, run_io=inline_io)
    async with trio.open_nursery() as nursery:
        await nursery.start(scheduler.run)
        await scheduler.set(cron(1, "* * * * *"))
        with trio.fail_after(WAIT_S):
            while len(fired) < 2:
                await trio.sleep(1)
        nursery.cancel_scope.cancel()


# ------------------------------------------------------------------ validation

@pytest.mark.parametrize(("spec", "words"), [
    (cron(1, "61 * * * *"), "invalid cron"),
    (cron(1, "0 2 * *"), "4 fields"),
    (cron(1, "0 2 * * *", tz="Europe/Atlantis"), "unknown time zone"),
    (at(1, NOON - 3600 * S), "in the past"),
    (at(1, 0), "needs a time"),
    (ScheduleSpec(1, "web", Action.STOP, signal="HUP", kind=ScheduleKind.AT,
                  at_us=NOON + S), "only be given with the kill"),
    (ScheduleSpec(1, "web", Action.KILL, signal="SIGNOPE", kind=ScheduleKind.AT,
                  at_us=NOON + S), "unknown signal"),
    (cron(1, "* * * * *", process="../etc"), "invalid process name"),
])
async def test_bad_schedules_are_rejected_in_plain_words(
    tmp_path: Path, autojump_clock: trio.testing.MockClock, spec: ScheduleSpec, words: str,
) -> None:
    scheduler = Harness(tmp_path, VirtualClock(NOON)).scheduler
    with pytest.raises(InvalidRequest, match=words):
        await scheduler.set(spec)
    assert scheduler.list() == []


async def test_clear_unknown_schedule(tmp_path: Path) -> None:
    with pytest.raises(UnknownSchedule, match="no schedule 42"):
        await Harness(tmp_path, CorrectedClock()).scheduler.clear(42)


async def test_at_slightly_in_the_past_fires_at_once_flagged_late(
    tmp_path: Path, autojump_clock: trio.testing.MockClock,
) -> None:
    clock = VirtualClock(NOON)
    harness = Harness(tmp_path, clock)
    async with harness.running() as scheduler:
        await scheduler.set(at(1, clock.now_us() - 3 * S))
        event = await harness.next_event()
    assert event.kind == EventKind.SCHEDULE_FIRED and event.late
    assert event.error_us == pytest.approx(3 * S, abs=1000)


# ------------------------------------------------------------------ persistence and restarts

async def test_schedules_survive_a_restart_and_reset_is_idempotent(
    tmp_path: Path, autojump_clock: trio.testing.MockClock,
) -> None:
    clock = VirtualClock(NOON)
    first = Harness(tmp_path, clock)
    async with first.running() as scheduler:
        await scheduler.set(cron(1, "* * * * *"))
        await scheduler.set(cron(2, "0 3 * * 1-5", tz="Europe/Paris", action=Action.KILL))
        await scheduler.set(ScheduleSpec(3, "db", Action.KILL, "TERM", ScheduleKind.AT, "", "",
                                         NOON + 3600 * S))
        await first.next_event()
        before = scheduler.list()
    again = Harness(tmp_path, clock).scheduler
    assert again.list() == before
    assert before[0].last_fire_us == _utc("2024-06-01T12:01")
    assert await again.set(cron(1, "* * * * *")) == before[0]  # same spec: history kept
    changed = await again.set(cron(1, "*/5 * * * *"))
    assert changed.next_fire_us == _utc("2024-06-01T12:05") and changed.last_fire_us == \
        before[0].last_fire_us


async def test_restart_reports_missed_fires_in_one_event_and_fires_the_recent_one(
    tmp_path: Path, autojump_clock: trio.testing.MockClock,
) -> None:
    await Harness(tmp_path, VirtualClock(NOON)).scheduler.set(cron(1, "* * * * *"))
    harness = Harness(tmp_path, VirtualClock(_utc("2024-06-01T12:10:45")))  # down 10 minutes
    async with harness.running():
        missed = await harness.next_event()
        late = await harness.next_event()
        on_time = await harness.next_event()
    assert missed.kind == EventKind.SCHEDULE_MISSED and missed.missed == 9
    assert missed.target_us == _utc("2024-06-01T12:01")
    assert missed.last_missed_us == _utc("2024-06-01T12:09")
    assert missed.next_fire_us == _utc("2024-06-01T12:11")
    assert "missed 9 fires (2024-06-01T12:01:00.000Z to 2024-06-01T12:09:00.000Z)" in \
        missed.message()
    assert late.kind == EventKind.SCHEDULE_FIRED and late.late
    assert late.target_us == _utc("2024-06-01T12:10") and late.error_us == 45 * S
    assert on_time.target_us == _utc("2024-06-01T12:11") and not on_time.late


async def test_fires_older_than_the_grace_are_only_reported(
    tmp_path: Path, autojump_clock: trio.testing.MockClock,
) -> None:
    await Harness(tmp_path, VirtualClock(NOON)).scheduler.set(cron(1, "0 * * * *"))
    harness = Harness(tmp_path, VirtualClock(_utc("2024-06-01T15:30")))
    async with harness.running() as scheduler:
        missed = await harness.next_event()
        assert missed.missed == 3 and not missed.missed_capped
        assert (missed.target_us, missed.last_missed_us) == (_utc("2024-06-01T13:00"),
                                                             _utc("2024-06-01T15:00"))
        assert scheduler.list()[0].next_fire_us == _utc("2024-06-01T16:00")
    assert harness.fired == []


@pytest.mark.parametrize(("down_s", "fires"), [(30, True), (3600, False)])
async def test_one_shot_missed_while_down(
    tmp_path: Path, autojump_clock: trio.testing.MockClock, down_s: int, fires: bool,
) -> None:
    await Harness(tmp_path, VirtualClock(NOON)).scheduler.set(at(1, NOON + 10 * S))
    harness = Harness(tmp_path, VirtualClock(NOON + (10 + down_s) * S))
    async with harness.running() as scheduler:
        event = await harness.next_event()
    if fires:  # within MISFIRE_GRACE_S: fired late, flagged
        assert event.kind == EventKind.SCHEDULE_FIRED and event.late
        assert event.error_us == down_s * S
    else:  # beyond: skipped, and reported
        assert event.kind == EventKind.SCHEDULE_MISSED and event.missed == 1
        assert harness.fired == []
        assert "missed 1 fire (" in event.message()
    assert scheduler.list()[0].next_fire_us == 0


async def test_a_very_long_outage_is_counted_up_to_a_cap(
    tmp_path: Path, autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(scheduler_module, "MAX_CATCH_UP", 50)
    await Harness(tmp_path, VirtualClock(NOON)).scheduler.set(cron(1, "* * * * *"))
    harness = Harness(tmp_path, VirtualClock(NOON + 30 * 24 * 3600 * S))
    async with harness.running() as scheduler:
        missed = await harness.next_event()
        assert missed.missed == 50 and missed.missed_capped
        assert "missed at least 50 fires" in missed.message()
        assert scheduler.list()[0].next_fire_us > harness.clock.now_us()


# ------------------------------------------------------------------ unsynced clock

async def test_waits_for_a_first_sync_then_runs_unsynced_and_says_so(
    tmp_path: Path, autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture,
) -> None:
    clock = VirtualClock(NOON, synced=False)
    harness = Harness(tmp_path, clock)
    await harness.scheduler.set(at(1, NOON + 1 * S))
    started = trio.current_time()
    with caplog.at_level(logging.WARNING):
        async with harness.running():
            event = await harness.next_event()
    assert trio.current_time() - started == pytest.approx(scheduler_module.SYNC_WAIT_S, abs=0.01)
    assert event.unsynced and event.late and "UNSYNCED" in event.message()
    assert any("UNSYNCED" in r.getMessage() for r in caplog.records)


async def test_a_sync_during_the_wait_releases_the_schedules(
    tmp_path: Path, autojump_clock: trio.testing.MockClock,
) -> None:
    clock = VirtualClock(NOON, synced=False)
    harness = Harness(tmp_path, clock)
    await harness.scheduler.set(at(1, NOON + 1 * S))
    started = trio.current_time()
    async with harness.running() as scheduler:
        await trio.sleep(2)
        clock.update(ClockSample("ntp:123", 0, 100, 2, clock.now_us()))
        scheduler.clock_changed()
        event = await harness.next_event()
    assert trio.current_time() - started == pytest.approx(2, abs=0.01)
    assert not event.unsynced


# ------------------------------------------------------------------ the real thing

async def test_fires_by_a_real_ntp_server_offset_not_the_local_clock(tmp_path: Path) -> None:
    """Real time, real SNTP responder 2.5 s ahead: the fire follows the NTP time."""
    clock = CorrectedClock()
    harness = Harness(tmp_path, clock, run_io=trio.to_thread.run_sync)
    async with trio.open_nursery() as nursery:
        port = await nursery.start(lambda task_status: serve_sntp(
            "::1", 0, offset_s=2.5, local_stratum=2, task_status=task_status))
        sync = TimeSync([f"[::1]:{port}"], clock, on_sync=lambda s: harness.scheduler.clock_changed())
        await nursery.start(sync.run)
        await nursery.start(harness.scheduler.run)
        with trio.fail_after(REAL_WAIT_S):
            while not clock.synced:
                await trio.sleep(0.01)
        target = clock.now_us() + 300_000
        await harness.scheduler.set(at(1, target))
        event = await harness.next_event(REAL_WAIT_S)
        local_at_fire = time.time_ns() // 1000
        nursery.cancel_scope.cancel()
    assert event.kind == EventKind.SCHEDULE_FIRED and not event.unsynced
    assert 0 <= event.error_us < 50_000  # loose: CI is noisy; the bench measures precision
    assert abs(local_at_fire - (target - 2_500_000)) < 100_000  # 2.5 s before local "target"
