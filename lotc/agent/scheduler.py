"""The agent's scheduler: fires process actions at their times on the corrected clock.

Theory of operation. Schedules live here, on the agent, so they fire while the
server is away and survive an agent restart (schedule_store.py keeps them in
the state dir). One planner task loops: take the corrected time, deal with
every schedule whose planned fire is due, then sleep until the earliest next
fire, computed from the corrected clock. The sleep is a trio deadline, not a
polling loop; it ends early when a schedule is set or cleared or when the
clock's offset changes (`clock_changed`, called by TimeSync's on_sync), and
the planner simply plans again. It never fires early: a fire happens only once
the corrected clock has reached its time.

Due fires. Normally one fire is due and it fires at once (its own task, so a
slow action delays nothing else). When several fire times of one schedule
have passed - the agent was down, or the clock jumped forward - the most
recent fires if it is at most MISFIRE_GRACE_S old (marked `late` when more
than LATE_S), and all the others are reported in ONE SCHEDULE_MISSED event
with their count and the first and last missed times, never one event per
fire. A one-shot `at` schedule follows the same rule: missed by up to
MISFIRE_GRACE_S it fires late with the `late` flag; missed by more it is
skipped and reported as missed (an action hours after its time surprises
more than one that did not happen and says so).

Durability. The planned next fire and the last fire are updated in memory
before the action starts, and written to disk while it runs: a crash during
that write (milliseconds) is the only way a fire can repeat after a restart.
`set` and `clear` return only once the change is on disk.

Clock. Until the clock has been synced once, the planner waits up to
`sync_wait_s` for a first sync; after that it runs on the unsynced clock,
logs a warning, and marks every fire made that way `unsynced`.
"""
from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from lotc.agent.clock import CorrectedClock
from lotc.agent.schedule_store import (
    ScheduleEventInfo,
    ScheduleSpec,
    ScheduleState,
    load_states,
    save_states,
)
from lotc.errors import InternalError, InvalidRequest, LotcError, UnknownSchedule
from lotc.names import validate_name
from lotc.parse.crontimes import format_us, iter_fires, next_fire, parse_cron, validate
from lotc.parse.signals import parse_signal
from protocol.enums import Action, EventKind, ScheduleKind

__all__ = [
    "ACTION_TIMEOUT_S",
    "LATE_S",
    "MISFIRE_GRACE_S",
    "SYNC_WAIT_S",
    "ScheduleEventInfo",
    "ScheduleSpec",
    "ScheduleState",
    "Scheduler",
]

logger = logging.getLogger(__name__)

SYNC_WAIT_S = 5.0  # how long schedules wait for a first NTP sync before running unsynced
MISFIRE_GRACE_S = 60.0  # a fire at most this late still happens (flagged late); older: missed
LATE_S = 1.0  # a fire later than this is flagged `late`
AT_PAST_GRACE_S = 5.0  # an `at` time this far in the past is still accepted (network delay)
ACTION_TIMEOUT_S = 60.0  # an action running longer is reported as failed (it keeps no lock)
TIMER_SLACK_S = 0.0015  # the last stretch before a fire is a yielding spin, not an OS timer
MAX_CATCH_UP = 10_000  # missed fires counted one by one; beyond, "at least" this many
US = 1_000_000


@dataclass
class _Entry:
    spec: ScheduleSpec
    next_us: int | None  # None: no more fires (one-shot done)
    last_us: int = 0

    def state(self) -> ScheduleState:
        return ScheduleState(self.spec, self.next_us or 0, self.last_us)


FireAction = Callable[[ScheduleSpec], Awaitable[None]]
EventSink = Callable[[ScheduleEventInfo], None]
IoRunner = Callable[..., Awaitable[Any]]


class Scheduler:
    def __init__(
        self,
        state_dir: Path,
        clock: CorrectedClock,
        fire: FireAction,
        on_event: EventSink,
        *,
        sync_wait_s: float = SYNC_WAIT_S,
        action_timeout_s: float = ACTION_TIMEOUT_S,
        run_io: IoRunner = trio.to_thread.run_sync,
    ) -> None:
        self.state_dir = Path(state_dir)
        self.clock = clock
        self._fire_action = fire
        self._on_event = on_event
        self.sync_wait_s = sync_wait_s
        self.action_timeout_s = action_timeout_s
        # File writes go to a worker thread so an fsync never delays a fire. Tests on
        # trio's autojump clock pass an inline runner: that clock jumps while a thread runs.
        self._run_io = run_io
        self._entries: dict[int, _Entry] = {}
        for state in load_states(self.state_dir):
            self._entries[state.spec.id] = _Entry(
                state.spec, state.next_fire_us or None, state.last_fire_us)
        self._wakeup = trio.Event()
        self._save_lock = trio.Lock()
        self._nursery: trio.Nursery | None = None

    # ------------------------------------------------------------ public API

    def list(self) -> list[ScheduleState]:
        return [self._entries[key].state() for key in sorted(self._entries)]

    async def set(self, spec: ScheduleSpec) -> ScheduleState:
        """Add or replace a schedule; durable when it returns. InvalidRequest if it cannot run."""
        spec = self._checked(spec)
        old = self._entries.get(spec.id)
        if old is not None and old.spec == spec:
            return old.state()  # the server re-pushing its desired state: keep our history
        now = self.clock.now_us()
        if spec.kind == ScheduleKind.AT:
            if spec.at_us < now - int(AT_PAST_GRACE_S * US):
                raise InvalidRequest(f"schedule time {format_us(spec.at_us)} is in the past "
                                     f"(agent clock: {format_us(now)})")
            planned: int | None = spec.at_us  # up to AT_PAST_GRACE_S late: fires at once
        else:
            planned = next_fire(spec, now)
        self._entries[spec.id] = _Entry(spec, planned, old.last_us if old else 0)
        await self._save_or_restore(spec.id, old)
        logger.info("schedule %d set: %s %s, next at %s", spec.id, spec.action.name.lower(),
                    spec.process, format_us(planned) if planned else "never")
        return self._entries[spec.id].state()

    async def clear(self, schedule_id: int) -> None:
        old = self._entries.pop(schedule_id, None)
        if old is None:
            raise UnknownSchedule(f"no schedule {schedule_id} on this agent")
        await self._save_or_restore(schedule_id, old)
        logger.info("schedule %d cleared", schedule_id)

    def clock_changed(self) -> None:
        """The clock's offset changed (or it synced): plan again. Safe to call from any task."""
        self._wake()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            await self._wait_for_first_sync()
            while True:
                self._wakeup = trio.Event()
                await self._sleep_until(self._handle_due(self.clock.now_us()))

    async def _sleep_until(self, wake_at: int | None) -> None:
        """Sleep until the corrected clock reaches `wake_at`, or until a re-plan is asked."""
        delay_s = math.inf if wake_at is None else (wake_at - self.clock.now_us()) / US
        if delay_s > TIMER_SLACK_S:
            with trio.move_on_after(delay_s - TIMER_SLACK_S):
                await self._wakeup.wait()
            return
        # The last stretch: OS timers round up to whole milliseconds (epoll), so yield
        # in a short spin instead. Bounded in real time: under trio's mock clock the
        # corrected time stands still while we spin, and a plain sleep takes over.
        assert wake_at is not None
        spin_end = time.monotonic() + max(0.0, delay_s) + TIMER_SLACK_S
        while self._early(wake_at) and time.monotonic() < spin_end:
            await trio.lowlevel.checkpoint()
        if self._early(wake_at):
            with trio.move_on_after(max(0.0, delay_s)):
                await self._wakeup.wait()

    def _early(self, wake_at: int) -> bool:
        return self.clock.now_us() < wake_at and not self._wakeup.is_set()

    # ------------------------------------------------------------ planning

    def _handle_due(self, now: int) -> int | None:
        """Fire or report what is due; return the earliest planned fire still ahead."""
        earliest: int | None = None
        changed = False
        for entry in list(self._entries.values()):
            if entry.next_us is not None and entry.next_us <= now:
                self._catch_up(entry, now)
                changed = True
            if entry.next_us is not None and (earliest is None or entry.next_us < earliest):
                earliest = entry.next_us
        if changed:
            self._spawn(self._save_quietly)  # one write for all the fires of this pass
        return earliest

    def _catch_up(self, entry: _Entry, now: int) -> None:
        """Handle every passed fire time of `entry`: fire the latest if recent, report the rest."""
        assert entry.next_us is not None
        count, first, previous, latest, following = 0, 0, 0, 0, None
        for moment in iter_fires(entry.spec, entry.next_us - 1):
            if moment > now:
                following = moment
                break
            count += 1
            first = first or moment
            previous, latest = latest, moment
            if count >= MAX_CATCH_UP:  # a very long outage: stop counting, jump ahead
                following = next_fire(entry.spec, now)
                break
        entry.next_us = following
        if count == 0:
            return
        fires = now - latest <= int(MISFIRE_GRACE_S * US)
        if fires:
            entry.last_us = latest
            self._spawn(self._fire, entry.spec, latest)
        missed = count - 1 if fires else count
        if missed > 0:
            self._report_missed(entry, first, previous if fires else latest, missed,
                                count >= MAX_CATCH_UP, now)

    def _report_missed(self, entry: _Entry, first: int, last: int, count: int, capped: bool,
                       now: int) -> None:
        info = ScheduleEventInfo(
            kind=EventKind.SCHEDULE_MISSED, schedule_id=entry.spec.id,
            process=entry.spec.process, action=entry.spec.action, target_us=first, time_us=now,
            missed=count, missed_capped=capped, last_missed_us=last,
            next_fire_us=entry.next_us or 0, unsynced=not self.clock.synced)
        logger.warning("%s", info.message())
        self._emit(info)

    # ------------------------------------------------------------ firing

    async def _fire(self, spec: ScheduleSpec, target_us: int) -> None:
        fired_us = self.clock.now_us()
        error = ""
        try:
            with trio.move_on_after(self.action_timeout_s) as scope:
                await self._fire_action(spec)
            if scope.cancelled_caught:
                error = f"the action did not finish within {self.action_timeout_s:g} s"
        except LotcError as exc:  # expected failures: unknown process, wrong state...
            error = str(exc) or type(exc).__name__
        except Exception as exc:  # a bug in an action must not stop the schedules
            logger.exception("schedule %d: action %s failed", spec.id, spec.action.name)
            error = f"{type(exc).__name__}: {exc}"
        info = ScheduleEventInfo(
            kind=EventKind.SCHEDULE_FIRED, schedule_id=spec.id, process=spec.process,
            action=spec.action, target_us=target_us, time_us=fired_us,
            late=fired_us - target_us > int(LATE_S * US), unsynced=not self.clock.synced,
            error=error, next_fire_us=self._next_of(spec.id))
        logger.log(logging.WARNING if error or info.late else logging.INFO, "%s", info.message())
        self._emit(info)

    def _emit(self, info: ScheduleEventInfo) -> None:
        try:
            self._on_event(info)
        except Exception:  # a reporting hook must not stop the schedules
            logger.exception("on_event callback failed for schedule %d", info.schedule_id)

    # ------------------------------------------------------------ helpers

    def _checked(self, spec: ScheduleSpec) -> ScheduleSpec:
        validate_name("process", spec.process)
        try:
            action, kind = Action(spec.action), ScheduleKind(spec.kind)
        except ValueError:
            raise InvalidRequest(f"unknown action or schedule kind in {spec!r}") from None
        if spec.signal:
            if action != Action.KILL:
                raise InvalidRequest("a signal can only be given with the kill action")
            parse_signal(spec.signal)
        validate(spec)
        cron = parse_cron(spec.cron) if kind == ScheduleKind.CRON else ""
        return ScheduleSpec(spec.id, spec.process, action, spec.signal, kind, cron,
                            spec.tz if kind == ScheduleKind.CRON else "",
                            spec.at_us if kind == ScheduleKind.AT else 0)

    def _next_of(self, schedule_id: int) -> int:
        entry = self._entries.get(schedule_id)
        return entry.next_us or 0 if entry is not None else 0

    async def _wait_for_first_sync(self) -> None:
        if self.clock.synced:
            return
        with trio.move_on_after(self.sync_wait_s):
            while not self.clock.synced:
                await self._wakeup.wait()
                self._wakeup = trio.Event()
        if not self.clock.synced:
            logger.warning("no NTP sync after %g s: schedules run on the local, UNSYNCED clock "
                           "and their events say so", self.sync_wait_s)

    def _wake(self) -> None:
        self._wakeup.set()

    def _spawn(self, function: Callable[..., Awaitable[None]], *args: object) -> None:
        assert self._nursery is not None, "due fires are only handled inside run()"
        self._nursery.start_soon(function, *args)

    async def _save(self) -> None:
        async with self._save_lock:  # the snapshot is taken inside: the last save wins
            states = self.list()
            await self._run_io(save_states, self.state_dir, states)

    async def _save_quietly(self) -> None:
        # Shielded: a shutdown right after a fire must not lose the record of it.
        with trio.CancelScope(shield=True):
            # Let the fires spawned with us start their actions first: the writer
            # thread would compete with them for the GIL.
            await trio.lowlevel.checkpoint()
            try:
                await self._save()
            except OSError as exc:
                logger.error("cannot store schedules in %s: %s", self.state_dir, exc)

    async def _save_or_restore(self, schedule_id: int, old: _Entry | None) -> None:
        try:
            await self._save()
        except OSError as exc:
            if old is None:
                self._entries.pop(schedule_id, None)
            else:
                self._entries[schedule_id] = old
            raise InternalError(f"cannot store schedules in {self.state_dir}: {exc}") from exc
        self._wake()
