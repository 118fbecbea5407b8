"""The agent's process supervisor: the async API the network agent drives.

Theory of operation
-------------------
`Supervisor.run()` owns a nursery; every process record gets one runner task
in it (runner.py) for as long as it is alive. Commands (`start`, `stop`,
`resume`, `terminate`, `kill`, `restart`, `remove`) are checked against the
lifecycle tables (lifecycle.py), act on the process group at once, record
the desired state, and persist it (persist.py) before they return. Every
state change is one `ProcessEvent` passed to `on_event` (a plain callable:
it must not block; the agent appends to its outbox).

Agent restarts: processes are re-adopted, not restarted. Each process runs
in its own session with its stdout/stderr opened directly on its log files
(logs.py), its NOTIFY_SOCKET an abstract socket name saved with its record,
and its pid saved with its start time. So when the agent goes away (crash,
upgrade, `systemctl restart`) nothing the process holds breaks: no pipe to
the agent to get SIGPIPE on, no socket file that vanished. A new supervisor
over the same state dir finds each pid, checks it is the same process
(its start time on the boot clock, still its own session leader), takes a pidfd on it and
binds the same notify name again: the service never noticed. Operators want
exactly this (a supervisor upgrade must not bounce every service), and
restarting instead would turn every agent crash into an outage of the node.
The cost: a re-adopted process is not our child, so when it ends its exit
status is unknown (the on-failure policy treats unknown as a failure). Its
output pipes are re-opened (pipe.py): its writes waited during the restart. A process whose pid is gone (or was
reused) is started again; records that had ended stay ended.

Processes are Linux-only (pidfd, abstract sockets, SO_PASSCRED).
"""
from __future__ import annotations

import builtins
import logging
import signal
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path

import trio

from lotc.agent.cgroup import ProcessCgroup
from lotc.agent.cgroup_layout import Layout
from lotc.agent.lifecycle import ProcessEvent, check_command, check_transition
from lotc.agent.logs import (
    LogConfig,
    LogFollower,
    log_path,
    remove_logs,
    split_timestamp,
    tail,
)
from lotc.agent.notify import new_address
from lotc.agent.persist import StateFiles
from lotc.agent.process import ProcessInfo, ProcessRecord, ProcessSpec, budget_for
from lotc.agent.runner import BundleVersions, NoVersions, Runner
from lotc.agent.spawn import adopt, find_orphan, signal_group
from lotc.errors import Conflict, InvalidRequest, InvalidState, LotcError, UnknownProcess
from lotc.parse.signals import parse_signal
from lotc.process_states import ALIVE
from protocol.enums import Action, DesiredState, ProcessState, StreamKind

__all__ = ["ProcessEvent", "ProcessInfo", "ProcessSpec", "Supervisor"]

logger = logging.getLogger(__name__)

S = ProcessState
KILL_WAIT = 5.0  # after SIGKILL, how long to wait for the end before giving up waiting
FREEZE_WAIT = 2.0  # how long stop waits for cgroup.events to say "frozen 1"
FREEZE_POLL = 0.002


def _utc_us() -> int:
    return time.time_ns() // 1000


class Supervisor:
    def __init__(self, state_dir: Path, resolve_bundle: Callable[[str], Path],
                 on_event: Callable[[ProcessEvent], None], *,
                 clock: Callable[[], int] = _utc_us, logs: LogConfig | None = None,
                 versions: BundleVersions | None = None, layout: Layout | None = None,
                 ) -> None:
        """`resolve_bundle(name)` gives the directory a new run uses; with `versions` (the
        bundle store) it also holds that version until `versions.release(path)`."""
        self.state_dir = Path(state_dir)
        self.log_root = self.state_dir / "logs"
        self.logs = logs or LogConfig()
        self._resolve = resolve_bundle
        self._on_event = on_event
        self._clock = clock
        self._files = StateFiles(self.state_dir)
        self._records: dict[str, ProcessRecord] = {}
        self._locks: dict[str, trio.Lock] = {}
        self._nursery: trio.Nursery | None = None
        self._dirty = trio.Event()  # set when a record changed and is not flushed yet
        self._versions = versions or NoVersions()
        self.layout = layout or Layout("none")  # the node's cgroups (cgroup_layout.py)
        self._runner = Runner(log_root=self.log_root, logs=self.logs, resolve_bundle=resolve_bundle,
                              transition=self._transition, save=self._save, emit=self._emit,
                              clock=clock, snapshot=self._snapshot, versions=self._versions,
                              layout=self.layout)

    # ---- lifetime --------------------------------------------------------------------
    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Restore the saved processes, then serve until cancelled.

        Cancelling leaves the processes running (see the module doc); call
        `terminate_all()` first for a full stop.
        """
        self._files.acquire()
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._sync_forever)
                await self._restore()
                task_status.started()
                await trio.sleep_forever()
        finally:
            self._nursery = None
            self._files.release()

    async def terminate_all(self, grace: float | None = None) -> None:
        """Terminate every live process, concurrently (for an agent told to stop them)."""
        async with trio.open_nursery() as nursery:
            for rec in list(self._records.values()):
                if rec.state in ALIVE:
                    nursery.start_soon(self._terminate, rec, grace)

    # ---- queries ---------------------------------------------------------------------
    def list(self) -> builtins.list[ProcessInfo]:
        return [rec.info() for rec in sorted(self._records.values(), key=lambda r: r.spec.name)]

    def get(self, name: str) -> ProcessInfo:
        return self._get(name).info()

    def cgroups(self) -> dict[str, ProcessCgroup]:
        """The cgroup of each process with a live run (for the stats sampler)."""
        return {name: rec.cgroup for name, rec in self._records.items()
                if rec.cgroup is not None and rec.pid is not None}

    def uses_bundle(self, bundle: str) -> builtins.list[str]:
        """Names of live processes (including ones waiting to restart) that run `bundle`."""
        return sorted(r.spec.name for r in self._records.values()
                      if r.spec.bundle == bundle and r.state in ALIVE)

    async def wait_state(self, name: str, states: Sequence[ProcessState],
                         timeout: float) -> ProcessInfo:
        """Wait until the process is in one of `states` (trio.TooSlowError after timeout)."""
        with trio.fail_after(timeout):
            while (rec := self._get(name)).state not in states:
                await rec.changed.wait()
        return rec.info()

    # ---- commands --------------------------------------------------------------------
    async def start(self, spec: ProcessSpec) -> ProcessInfo:
        """Start a new process (or one that has ended, with this spec). Returns once spawned."""
        # UnknownBundle before anything changes; the run holds its version itself
        self._versions.release(self._resolve(spec.bundle))
        async with self._lock(spec.name):
            rec = self._records.get(spec.name)
            if rec is not None and rec.state in ALIVE:
                raise Conflict(f"process {spec.name!r} already exists and is "
                               f"{rec.state.name.lower()}; restart or remove it first")
            if rec is None:
                rec = ProcessRecord(spec=spec, notify_address=new_address(),
                                    budget=budget_for(spec))
                self._records[spec.name] = rec
            else:
                check_command(Action.START, spec.name, rec.state)
                await self._runner_finished(rec)
                rec.spec, rec.budget = spec, budget_for(spec)
            rec.desired = DesiredState.RUNNING
            try:
                await self._launch(rec)
            finally:
                if rec.state == S.NONE:  # never got as far as STARTING: leave no trace
                    del self._records[spec.name]
            return rec.info()

    async def stop(self, name: str) -> str:
        """Suspend the whole tree: freeze its cgroup (escaped children too) and wait until
        the kernel says it is frozen, or SIGSTOP the group without a freezer. Its
        watchdog is paused. Returns how, in words."""
        rec = self._get(name)
        check_command(Action.STOP, name, rec.state)
        rec.desired = DesiredState.STOPPED
        how = "SIGSTOP to its process group"
        if rec.pid is not None and rec.cgroup is not None and rec.cgroup.freeze(True):
            how = await self._frozen(rec)
            self._transition(rec, S.STOPPED, f"stopped on request ({how})")
        elif self._send(rec, signal.SIGSTOP):
            self._transition(rec, S.STOPPED, f"stopped on request ({how})")
        self._save(rec)
        return how

    @staticmethod
    async def _frozen(rec: ProcessRecord) -> str:
        """Wait (bounded) for the freeze to complete; how it went, for the event."""
        assert rec.cgroup is not None
        what = rec.cgroup.layout.freezer()
        with trio.move_on_after(FREEZE_WAIT):
            while not rec.cgroup.frozen():
                await trio.sleep(FREEZE_POLL)
            return f"{what}: frozen, {len(rec.cgroup.members())} processes"
        return f"{what}: not frozen after {FREEZE_WAIT:g} s, still freezing"

    async def resume(self, name: str) -> str:
        """Thaw (or SIGCONT) the whole tree; its watchdog restarts afresh. Returns how."""
        rec = self._get(name)
        check_command(Action.RESUME, name, rec.state)
        rec.desired = DesiredState.RUNNING
        self._continue(rec)
        if rec.liveness_timeout > 0:
            rec.deadline = trio.current_time() + rec.liveness_timeout
        how = "SIGCONT" if rec.cgroup is None or rec.cgroup.layout.freezer() == "SIGSTOP" \
            else "thawed"
        self._transition(rec, S.RUNNING, f"resumed on request ({how})")
        rec.fire_resumed()
        self._save(rec)
        return how

    async def terminate(self, name: str, grace: float | None = None) -> ProcessInfo:
        """SIGTERM to the group, SIGKILL after `grace` (default: the spec's). Returns once
        the process has ended. A process that had already ended only stays down (see
        lifecycle.COMMANDS)."""
        rec = self._get(name)
        check_command(Action.TERMINATE, name, rec.state)
        await self._terminate(rec, grace)
        return rec.info()

    async def kill(self, name: str, signal_name: str | int = "SIGKILL") -> str:
        """Send any signal to the whole tree. SIGKILL also means "stay down" (desired
        EXITED); other signals are only delivered, and if one ends the process its policy
        decides. Returns whom it reached, in words."""
        sig = parse_signal(signal_name)
        rec = self._get(name)
        check_command(Action.KILL, name, rec.state)
        if sig == signal.SIGKILL:
            rec.desired = DesiredState.EXITED
        whom = "its process group" if rec.cgroup is None else \
            f"every process of its cgroup ({len(rec.cgroup.members())})"
        self._send(rec, sig)
        self._save(rec)
        return whom

    async def restart(self, name: str) -> ProcessInfo:
        """Terminate if alive, forget the crash history, start again. Returns once spawned."""
        async with self._lock(name):
            rec = self._get(name)
            check_command(Action.RESTART, name, rec.state)
            if rec.state in ALIVE:
                await self._terminate(rec, None)
            await self._runner_finished(rec)
            rec.forget_history()
            rec.desired = DesiredState.RUNNING
            await self._launch(rec)
            return rec.info()

    async def remove(self, name: str) -> None:
        """Terminate if alive and forget the process, and its log files."""
        async with self._lock(name):
            rec = self._get(name)
            if rec.state in ALIVE:
                await self._terminate(rec, None)
            await self._runner_finished(rec)
            del self._records[name]
            self._files.delete(name)
            self._dirty.set()
            await trio.to_thread.run_sync(remove_logs, self.log_root, name)

    # ---- logs ------------------------------------------------------------------------
    async def tail_logs(self, name: str, lines: int = 100,
                        stream: StreamKind = StreamKind.STDOUT, *,
                        timestamps: bool = False) -> builtins.list[str]:
        """The last `lines` lines of one stream, reaching into rotated files if needed;
        with `timestamps`, each as stored, starting with the time it was written."""
        rec = self._get(name)
        if lines < 0:
            raise InvalidRequest("lines must be >= 0")
        path = log_path(self.log_root, name, StreamKind(stream))
        backups = rec.spec.log_config(self.logs).backups
        found = await trio.to_thread.run_sync(tail, path, lines, backups)
        return found if timestamps else [split_timestamp(line)[1] for line in found]

    async def follow_logs(self, name: str, streams: Sequence[StreamKind] = tuple(StreamKind),
                          *, timestamps: bool = False,
                          ) -> AsyncIterator[tuple[StreamKind, builtins.list[str]]]:
        """Batches of new lines as they are written, until the caller stops iterating or
        the process is removed. Polls every `LogConfig.follow_interval`."""
        self._get(name)
        followers = {s: LogFollower(log_path(self.log_root, name, s)) for s in streams}
        while name in self._records:
            await trio.sleep(self.logs.follow_interval)
            for stream, follower in followers.items():
                if batch := follower.poll():
                    yield stream, (batch if timestamps else
                                   [split_timestamp(line)[1] for line in batch])

    # ---- internals -------------------------------------------------------------------
    def _get(self, name: str) -> ProcessRecord:
        try:
            return self._records[name]
        except KeyError:
            raise UnknownProcess(f"no process named {name!r}") from None

    def _lock(self, name: str) -> trio.Lock:
        return self._locks.setdefault(name, trio.Lock())

    def _emit(self, event: ProcessEvent) -> None:
        try:
            self._on_event(event)
        except Exception:  # a broken listener must not take the supervisor down
            logger.exception("on_event failed for %s", event)

    def _transition(self, rec: ProcessRecord, new: ProcessState, reason: str, *,
                    with_exit: bool = False) -> None:
        old = rec.state
        check_transition(old, new)
        rec.state = new
        rec.notify_changed()
        logger.info("process %s: %s -> %s: %s", rec.spec.name, old.name, new.name, reason)
        self._emit(rec.event(old, reason, time_us=self._clock(), with_exit=with_exit))

    def _save(self, rec: ProcessRecord) -> None:
        """Record the change now (see persist.py); the flush to disk follows in the syncer."""
        try:
            self._files.save(rec.spec.name, rec.to_json())
        except OSError as exc:  # a full disk must not stop the supervisor
            logger.error("cannot save the record of %s: %s", rec.spec.name, exc)
        self._dirty.set()

    def _snapshot(self, rec: ProcessRecord) -> Callable[[], None]:
        """A blocking save of the record as it is now, to run in a worker thread before a
        spawn. It raises: a process started without a record (full disk) could not be
        re-adopted after an agent restart and would then run twice, so the start fails
        instead, in plain words (found by tests/faults/test_full_disk.py)."""
        name, data = rec.spec.name, rec.to_json()

        def write() -> None:
            self._files.save(name, data)

        return write

    async def _sync_forever(self) -> None:
        """Flush changed records in bursts, off the trio thread."""
        try:
            while True:
                await self._dirty.wait()
                self._dirty = trio.Event()
                await trio.to_thread.run_sync(self._sync_once)
        finally:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(self._sync_once)

    def _sync_once(self) -> None:
        try:
            self._files.sync()
        except OSError as exc:
            logger.error("cannot flush process records: %s", exc)

    def _send(self, rec: ProcessRecord, sig: int) -> bool:
        """Signal the tree now (every member of its cgroup, or its process group without
        one), or queue it if the pid does not exist yet. False if the process has no
        live tree (ended, or in backoff). SIGKILL goes through cgroup.kill where there
        is one: it also reaches members forking meanwhile."""
        if rec.pid is not None:
            if rec.cgroup is None:
                signal_group(rec.pid, sig)
            elif sig == signal.SIGKILL:
                rec.cgroup.kill()
            else:
                rec.cgroup.signal(sig)
            return True
        if rec.state == S.STARTING:
            rec.pending_signals.append(sig)
        return False

    async def _terminate(self, rec: ProcessRecord, grace: float | None) -> None:
        rec.desired = DesiredState.EXITED
        self._save(rec)
        if rec.state == S.BACKOFF:
            rec.wake_backoff()
        self._send(rec, signal.SIGTERM)
        self._continue(rec)  # a suspended process must run to act on SIGTERM
        with trio.move_on_after(rec.spec.grace if grace is None else grace):
            await self._until_ended(rec)
        if rec.state in ALIVE:
            self._send(rec, signal.SIGKILL)
            with trio.move_on_after(KILL_WAIT):
                await self._until_ended(rec)

    def _continue(self, rec: ProcessRecord) -> None:
        """Let a suspended tree run again: thaw its cgroup, and SIGCONT (a member may
        have been stopped by a signal, or the node has no freezer)."""
        if rec.pid is not None and rec.cgroup is not None:
            rec.cgroup.freeze(False)
        self._send(rec, signal.SIGCONT)

    @staticmethod
    async def _until_ended(rec: ProcessRecord) -> None:
        while rec.state in ALIVE:
            await rec.changed.wait()

    @staticmethod
    async def _runner_finished(rec: ProcessRecord) -> None:
        if rec.runner_done is not None:
            await rec.runner_done.wait()

    async def _launch(self, rec: ProcessRecord, handle: object = None) -> None:
        if self._nursery is None:
            raise InvalidState("the supervisor is not running")
        rec.runner_done = trio.Event()
        with trio.CancelScope(shield=True):  # spawning takes milliseconds; never half-done
            await self._nursery.start(self._runner.run, rec, handle)

    # ---- agent restart and housekeeping ----------------------------------------------
    async def _restore(self) -> None:
        records = await trio.to_thread.run_sync(self._files.load_all)
        for data in records:
            try:
                rec, saved_state = ProcessRecord.from_json(data)
            except (KeyError, TypeError, ValueError, LotcError) as exc:
                logger.error("ignoring a process record that cannot be read: %s", exc)
                continue
            self._records[rec.spec.name] = rec
            if saved_state in ALIVE:
                await self._revive(rec)
            else:
                rec.state = saved_state  # loaded as left: not a change, no event

    async def _revive(self, rec: ProcessRecord) -> None:
        """Re-adopt the saved pid if it is still the same process, else start again."""
        adopted = None
        rec.cgroup = ProcessCgroup.of(self.layout, rec.spec.name)  # same name, same path
        if not rec.pid:  # the agent died between the spawn and recording the pid
            orphan = await trio.to_thread.run_sync(find_orphan, rec.notify_address)
            if orphan is not None:
                rec.pid, rec.create_time, rec.start_ticks = orphan
        if rec.pid:
            adopted = await trio.to_thread.run_sync(adopt, rec.pid, rec.create_time,
                                                    rec.log_pipes, rec.start_ticks)
        if adopted is None and rec.desired == DesiredState.EXITED:
            rec.pid = None  # it was being terminated when the agent went away: done
            rec.state = S.EXITED
            self._save(rec)
            return
        if adopted is None:
            why = f"pid {rec.pid} had ended" if rec.pid else "it was not running"
            logger.info("process %s: starting again after an agent restart (%s)",
                        rec.spec.name, why)
            rec.pid = None
            try:
                await self._launch(rec)
            except LotcError as exc:  # recorded as FAILED by the runner
                logger.error("process %s could not be started again: %s", rec.spec.name, exc)
            return
        handle, suspended = adopted
        handle.cgroup = rec.cgroup
        if rec.cgroup is not None:  # a frozen tree shows no T state: ask its cgroup
            suspended = suspended or rec.cgroup.wants_frozen()
            rec.oom_base = await trio.to_thread.run_sync(rec.cgroup.oom_kills)
        if rec.bundle_path:  # keep the version it runs in on disk until it ends
            rec.holds_bundle = await trio.to_thread.run_sync(
                self._versions.hold, Path(rec.bundle_path))
        rec.liveness_timeout = rec.spec.liveness_timeout
        rec.started_mono = trio.current_time()
        if rec.liveness_timeout > 0:
            rec.deadline = rec.started_mono + rec.liveness_timeout
        new = S.STOPPED if suspended else S.RUNNING
        finish = rec.desired == DesiredState.EXITED
        if not finish:
            rec.desired = DesiredState.STOPPED if suspended else DesiredState.RUNNING
        self._transition(rec, new, f"re-adopted pid {rec.pid} after an agent restart")
        await self._launch(rec, handle)
        if finish:  # a terminate was under way when the agent went away: complete it
            assert self._nursery is not None
            self._nursery.start_soon(self._terminate, rec, None)
