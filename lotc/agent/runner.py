"""One task per process record: spawn, watch, enforce liveness, decide restarts.

Theory of operation
-------------------
`Runner.run(rec, handle)` is started in the supervisor's nursery when a
record is started (or re-adopted) and lives until the record reaches EXITED
or FAILED. It owns the record's notify socket (bound for the runner's whole
life, so every run of the process finds the same NOTIFY_SOCKET) and loops:

    spawn (STARTING -> RUNNING) -> wait for the end, with the watchdog beside
    -> decide (EXITED / FAILED / BACKOFF) -> wait the backoff -> spawn ...

Commands never wait on the runner to act: they signal the process group
directly and set `desired`; the runner reads `desired` when the run ends
(an end the admin asked for is never restarted). Signals asked for while the
process is STARTING (no pid yet) are queued and delivered the moment the pid
exists, before the runner yields to anyone: no lost signals.

The watchdog sleeps until the record's deadline; a WATCHDOG=1 datagram only
moves the deadline later (no wake-up per beat); the watchdog wakes at the old
deadline, sees the new one and sleeps again. A miss SIGKILLs the group at
once: a hung program cannot be trusted with a graceful SIGTERM, and the
restart must follow within milliseconds. While the process is suspended the
watchdog waits for the resume, which sets a fresh deadline.

Cancellation (the agent shutting down or crashing) leaves the processes
running: the finally blocks close our sockets and pidfds, nothing else, so a
new agent can re-adopt them. Records are saved synchronously, in the same
step as the change (persist.py), so a cancellation never finds one half-done.
"""
from __future__ import annotations

import contextlib
import logging
import math
import os
import signal
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Protocol

import trio

from lotc.agent.cgroup import ProcessCgroup, marked_members, refuse_unenforced
from lotc.agent.cgroup_layout import Layout
from lotc.agent.health import LIMIT as HEALTH_LIMIT
from lotc.agent.health import watch_health
from lotc.agent.identity import Identity, identity_for, read_env_file
from lotc.agent.lifecycle import ProcessEvent
from lotc.agent.logs import LogConfig, LogWriter, log_path
from lotc.agent.notify import NotifySocket
from lotc.agent.pipe import pump
from lotc.agent.process import ProcessRecord
from lotc.agent.restart import RunOutcome, should_restart
from lotc.agent.spawn import ChildHandle, signal_group, spawn
from lotc.errors import LotcError, SpawnFailed
from lotc.process_states import ENDED_ON_REQUEST
from protocol.enums import DesiredState, EventKind, ProcessState

__all__ = ["Runner"]

logger = logging.getLogger(__name__)

S = ProcessState
# Inherited variables that are the agent's, not the child's: systemd's handles of the
# agent's own unit (they would mislead a child about *its* watchdog, sockets or journal
# stream), and the shell's idea of the directory (PWD is set to the child's own).
# Every LOTC_* variable is dropped too (_AGENT_PREFIX): LOTC_TOKEN would let any program
# a process runs act as the agent. See lotc/agent/process.py for what a child gets.
_AGENT_ONLY_ENV = frozenset({"NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS",
                             "LISTEN_PID", "LISTEN_FDNAMES", "JOURNAL_STREAM", "INVOCATION_ID",
                             "PWD", "OLDPWD"})
_AGENT_PREFIX = "LOTC_"


def inherited_environment(agent_env: Mapping[str, str]) -> dict[str, str]:
    """What a child inherits of the agent's environment: all but the agent's own."""
    return {k: v for k, v in agent_env.items()
            if k not in _AGENT_ONLY_ENV and not k.startswith(_AGENT_PREFIX)}


class BundleVersions(Protocol):
    """Holds a bundle version while a run uses it (lotc.agent.store.BundleStore)."""

    def hold(self, path: Path) -> bool: ...

    def release(self, path: Path) -> None: ...


class NoVersions:
    """Bundles that are plain directories (tests, benchmarks): nothing to hold."""

    def hold(self, path: Path) -> bool:
        return True

    def release(self, path: Path) -> None:
        return None


# After the leader ended (its group is SIGKILLed then), how long its pipes may take to
# reach EOF: short, as only a writer that left the group can hold them open, and the
# restart waits for it.
DRAIN_TIMEOUT = 0.5
KILL_WAIT = 5.0  # after the cgroup is killed, how long its members may take to go


class Runner:
    def __init__(self, *, log_root: Path, logs: LogConfig, resolve_bundle: Callable[[str], Path],
                 transition: Callable[..., None], save: Callable[[ProcessRecord], None],
                 emit: Callable[[ProcessEvent], None], clock: Callable[[], int],
                 snapshot: Callable[[ProcessRecord], Callable[[], None]],
                 versions: BundleVersions | None = None, layout: Layout | None = None,
                 ) -> None:
        self.log_root = log_root
        self.layout = layout or Layout("none")  # the node's cgroups (cgroup_layout.py)
        self.check_limiter = trio.CapacityLimiter(HEALTH_LIMIT)  # health checks at once
        self.logs = logs  # the agent's defaults; a spec may set its own
        self.resolve_bundle = resolve_bundle  # name -> the version's directory, held
        self.versions = versions or NoVersions()
        self.transition = transition  # (rec, new_state, reason, *, with_exit=False)
        self.save = save  # (rec) -> None: records the change at once (persist.py)
        self.emit = emit
        self.clock = clock
        self.snapshot = snapshot  # (rec) -> blocking save of its current state, for a thread

    # ---- the record's whole life -----------------------------------------------------
    async def run(self, rec: ProcessRecord, handle: ChildHandle | None,
                  task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            sock = NotifySocket(rec.notify_address)
        except OSError as exc:
            raise SpawnFailed(f"process {rec.spec.name!r}: cannot bind its notify socket "
                              f"{rec.notify_address}: {exc.strerror}") from None
        try:
            if handle is None:  # the first spawn, before started(): its error is the caller's
                handle = await self._spawn(rec, raise_error=True)
            task_status.started()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._read_notify, rec, sock)  # datagrams wait in the socket
                await self._loop(rec, handle)
                nursery.cancel_scope.cancel()
        finally:
            sock.close()
            if rec.runner_done is not None:
                rec.runner_done.set()

    async def _loop(self, rec: ProcessRecord, handle: ChildHandle | None) -> None:
        while True:
            if handle is None:
                handle = await self._spawn(rec, raise_error=False)
                if handle is None:
                    return
            try:
                outcome = await self._watch(rec, handle)
            finally:
                handle.close()
            handle = None
            await self._release_bundle(rec)
            delay = await self._after_run(rec, outcome)
            if delay is None or not await self._backoff(rec, delay):
                return

    async def _release_bundle(self, rec: ProcessRecord) -> None:
        """The run ended: its bundle version may go (off the loop: a tree can be big)."""
        if rec.holds_bundle:
            rec.holds_bundle = False
            await trio.to_thread.run_sync(self.versions.release, Path(rec.bundle_path))

    # ---- spawning --------------------------------------------------------------------
    def _environment(self, rec: ProcessRecord, bundle: Path, cwd: Path,
                     identity: Identity) -> dict[str, str]:
        env = inherited_environment(os.environ)
        if rec.spec.env_file:
            env.update(read_env_file(bundle if bundle.is_dir() else bundle.parent,
                                     rec.spec.env_file))
        env.update(rec.spec.env)
        env.update(identity.env)
        env["PWD"] = os.path.realpath(cwd)
        env["LOTC_PROCESS"] = rec.spec.name
        env["LOTC_BUNDLE"] = str(bundle)
        env["NOTIFY_SOCKET"] = rec.notify_address
        if rec.spec.liveness_timeout > 0:
            env["WATCHDOG_USEC"] = str(max(1, round(rec.spec.liveness_timeout * 1e6)))
        return env

    async def _prepare(self, rec: ProcessRecord) -> tuple[Path, dict[str, str], Identity]:
        bundle = self.resolve_bundle(rec.spec.bundle)  # held from here: see _release_bundle
        rec.bundle_path, rec.holds_bundle = str(bundle), True
        base = bundle if bundle.is_dir() else bundle.parent
        cwd = base / rec.spec.cwd if rec.spec.cwd else base
        rec.run_dir = str(cwd)

        def child_setup() -> tuple[dict[str, str], Identity]:
            identity = identity_for(rec.spec.nofile, rec.spec.user, bundle)
            return self._environment(rec, bundle, cwd, identity), identity
        # Name look-ups, the env file and the bundle's modes block: off the loop then.
        slow = rec.spec.user or rec.spec.env_file
        env, identity = await trio.to_thread.run_sync(child_setup) if slow else child_setup()
        return cwd, env, identity

    async def _spawn(self, rec: ProcessRecord, *, raise_error: bool) -> ChildHandle | None:
        """STARTING -> RUNNING (or STOPPED), or -> FAILED. None on failure unless raise_error."""
        if rec.desired == DesiredState.STOPPED and rec.state == S.BACKOFF:
            rec.desired = DesiredState.RUNNING  # the suspension ended with the run it applied to
        rec.pending_signals.clear()
        self.transition(rec, S.STARTING, "starting")
        try:
            cwd, env, identity = await self._prepare(rec)
            write_record = self.snapshot(rec)

            cgroup = ProcessCgroup.of(self.layout, rec.spec.name, rec.spec.limits())

            def record_then_spawn() -> ChildHandle:
                # A first record creates a file (slow on ext4): do it here, off the loop;
                # the save after the spawn is then a quick rewrite in place.
                write_record()
                refuse_unenforced(self.layout, rec.spec.limits())
                if cgroup is None:
                    return spawn(rec.spec.argv, cwd, env, identity)
                cgroup.create(rec.spec.limits())
                rec.oom_base = cgroup.oom_kills()
                child = spawn(rec.spec.argv, cwd, env, identity, cgroup.procs_files())
                child.cgroup = cgroup
                return child

            rec.cgroup = cgroup
            handle = await trio.to_thread.run_sync(record_then_spawn)
        except (LotcError, OSError) as exc:
            message = str(exc) if isinstance(exc, LotcError) else f"cannot start: {exc}"
            await self._release_bundle(rec)
            rec.status = message
            rec.desired = DesiredState.EXITED  # nothing will run it again unless asked
            self.transition(rec, S.FAILED, message)
            self.save(rec)
            if raise_error:
                raise exc if isinstance(exc, LotcError) else SpawnFailed(message) from None
            return None
        self._started(rec, handle)
        self.save(rec)
        return handle

    def _started(self, rec: ProcessRecord, handle: ChildHandle) -> None:
        """Book-keeping of a fresh run, then the queued signals: no await in between."""
        rec.health_failed = False
        rec.health = "starting" if rec.spec.check else ""
        rec.pid, rec.create_time = handle.pid, handle.create_time
        rec.start_ticks = handle.start_ticks
        rec.log_pipes = handle.pipe_records()
        rec.started_at, rec.started_mono = self.clock(), trio.current_time()
        rec.exit_code = rec.exit_signal = None
        rec.ready, rec.liveness_missed = False, False
        rec.liveness_timeout = rec.spec.liveness_timeout
        rec.deadline = rec.started_mono + rec.liveness_timeout if rec.liveness_timeout else math.inf
        for sig in rec.pending_signals:
            signal_group(handle.pid, sig)
        rec.pending_signals.clear()
        new = S.STOPPED if rec.desired == DesiredState.STOPPED else S.RUNNING
        self.transition(rec, new, f"spawned pid {handle.pid}")

    # ---- one run ---------------------------------------------------------------------
    async def _watch(self, rec: ProcessRecord, handle: ChildHandle) -> RunOutcome:
        async with trio.open_nursery() as pumps:
            drained = self._start_pumps(pumps, rec, handle)
            async with trio.open_nursery() as nursery:
                if rec.liveness_timeout > 0:
                    nursery.start_soon(self._watchdog, rec, handle)
                if rec.spec.check:
                    nursery.start_soon(watch_health, rec, Path(rec.run_dir or rec.bundle_path or "."),
                                       self._check_env(rec), self.check_limiter, self.emit,
                                       self.clock, lambda: self._kill_run(rec, handle))
                code, sig = await handle.wait()
                nursery.cancel_scope.cancel()
            with trio.move_on_after(DRAIN_TIMEOUT):  # its last words reach the file
                for done in drained:
                    await done.wait()
            pumps.cancel_scope.cancel()
        out_of_memory = await trio.to_thread.run_sync(self._empty, rec, handle)
        outcome = RunOutcome(code, sig, requested=rec.desired == DesiredState.EXITED,
                             liveness_missed=rec.liveness_missed,
                             out_of_memory=rec.spec.memory if out_of_memory else 0,
                             unhealthy=rec.spec.check_failures if rec.health_failed else 0)
        rec.health = rec.health_why = ""  # the next run starts its checks afresh
        rec.health_failed = False
        if out_of_memory:
            rec.oom_kills += 1
            self.emit(ProcessEvent(self.clock(), rec.spec.name, rec.state, rec.state,
                                   outcome.describe(), kind=EventKind.OUT_OF_MEMORY))
        return outcome

    @staticmethod
    def _empty(rec: ProcessRecord, handle: ChildHandle) -> bool:
        """Leave nothing of the run behind (blocking): kill what is left of its cgroup
        and remove it; without cgroups, kill what carries its marker. True when the
        kernel killed a member for the memory limit during the run."""
        cgroup = handle.cgroup
        if cgroup is None:
            for pid in marked_members(rec.notify_address):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            return False
        out_of_memory = cgroup.oom_kills() > rec.oom_base
        if not cgroup.kill_and_wait(KILL_WAIT):
            logger.warning("%s: members of its cgroup outlived SIGKILL for %g s: %s",
                           rec.spec.name, KILL_WAIT, cgroup.members())
        cgroup.remove()
        return out_of_memory

    def _start_pumps(self, nursery: trio.Nursery, rec: ProcessRecord,
                     handle: ChildHandle) -> list[trio.Event]:
        config = rec.spec.log_config(self.logs)
        drained = []
        for stream, fd in handle.pipes.items():
            done = trio.Event()
            writer = LogWriter(log_path(self.log_root, rec.spec.name, stream), config,
                               self.clock)

            async def run(fd: int = fd, writer: LogWriter = writer,
                          done: trio.Event = done) -> None:
                await pump(fd, writer)
                done.set()

            nursery.start_soon(run)
            drained.append(done)
        return drained

    @staticmethod
    def _kill_run(rec: ProcessRecord, handle: ChildHandle) -> None:
        """SIGKILL the whole run (its cgroup, or its group): its policy decides what next."""
        if handle.cgroup is not None:
            handle.cgroup.kill()
        signal_group(handle.pid, signal.SIGKILL)

    @staticmethod
    def _check_env(rec: ProcessRecord) -> dict[str, str]:
        """An exec check runs with the program's environment: same PATH, same variables."""
        return {**inherited_environment(os.environ), **rec.spec.env,
                "LOTC_PROCESS": rec.spec.name}

    async def _watchdog(self, rec: ProcessRecord, handle: ChildHandle) -> None:
        while True:
            if rec.state == S.STOPPED:
                await rec.resumed.wait()
                continue
            if trio.current_time() >= rec.deadline:
                break
            with trio.move_on_at(rec.deadline):
                await rec.poke.wait()
        late_ms = (trio.current_time() - rec.deadline) * 1e3 if math.isfinite(rec.deadline) else 0
        rec.liveness_missed = True
        reason = (f"no liveness beat within {rec.liveness_timeout:g} s "
                  f"(noticed {late_ms:.1f} ms after the deadline); killing pid {handle.pid}")
        self.emit(ProcessEvent(self.clock(), rec.spec.name, rec.state, rec.state, reason,
                               kind=EventKind.LIVENESS_MISSED))
        signal_group(handle.pid, signal.SIGKILL)

    async def _after_run(self, rec: ProcessRecord, outcome: RunOutcome) -> float | None:
        """Record the end; the backoff delay before the next run, or None to stop here."""
        now = trio.current_time()
        rec.pid = None
        rec.exit_code, rec.exit_signal = outcome.exit_code, outcome.signal
        rec.budget.run_ended(now - rec.started_mono)
        what = outcome.describe()
        if not should_restart(rec.spec.restart, outcome):
            why = ENDED_ON_REQUEST if outcome.requested else \
                f"policy {rec.spec.restart.name.lower()}"
            rec.desired = DesiredState.EXITED  # desired follows reality: it stays down
            self.transition(rec, S.EXITED, f"{what} ({why})", with_exit=True)
            delay = None
        elif rec.budget.exhausted(now):
            reason = (f"{what}; {rec.spec.restart_limit} restarts within "
                      f"{rec.spec.restart_window:g} s: giving up")
            rec.status = reason
            rec.desired = DesiredState.EXITED
            self.transition(rec, S.FAILED, reason, with_exit=True)
            delay = None
        else:
            delay = rec.budget.next_delay(rec.spec.backoff_base, rec.spec.backoff_cap)
            rec.budget.record_restart(now)
            rec.restarts += 1
            self.transition(rec, S.BACKOFF, f"{what}; restarting in {delay:g} s", with_exit=True)
        self.save(rec)
        return delay

    async def _backoff(self, rec: ProcessRecord, delay: float) -> bool:
        """Wait out the delay; False if the admin terminated the process meanwhile."""
        if delay > 0 and rec.desired != DesiredState.EXITED:
            with trio.move_on_after(delay):
                await rec.wake.wait()
        if rec.desired == DesiredState.EXITED:
            self.transition(rec, S.EXITED, "terminated during backoff")
            self.save(rec)
            return False
        return True

    # ---- notify datagrams ------------------------------------------------------------
    @staticmethod
    def _from_run(rec: ProcessRecord, sender: int | None) -> bool:
        """Is the sender part of the current run's session? Gone senders get the benefit
        of the doubt: a one-shot `python -c` beat has often exited before we read it."""
        if rec.pid is None:
            return False
        if sender is None or sender == rec.pid:
            return True
        try:
            return os.getsid(sender) == rec.pid
        except ProcessLookupError:
            return True
        except PermissionError:
            return False

    async def _read_notify(self, rec: ProcessRecord, sock: NotifySocket) -> None:
        while True:
            sender, fields = await sock.receive()
            if self._from_run(rec, sender):
                self._apply_notify(rec, fields)
            else:
                logger.debug("%s: ignored notify from pid %s outside its session",
                             rec.spec.name, sender)

    def _apply_notify(self, rec: ProcessRecord, fields: dict[str, str]) -> None:
        if fields.get("READY") == "1":
            rec.ready = True
        if "STATUS" in fields:
            rec.status = fields["STATUS"]
        watchdog = fields.get("WATCHDOG")
        if watchdog == "1":
            rec.last_liveness = self.clock()
        if rec.liveness_timeout <= 0:
            return  # like systemd: WATCHDOG_USEC= and trigger need a configured watchdog
        now = trio.current_time()
        usec = fields.get("WATCHDOG_USEC", "")
        if usec.isdigit() and int(usec) > 0:
            rec.liveness_timeout = int(usec) / 1e6
            rec.deadline = now + rec.liveness_timeout
            rec.poke_watchdog()
        if watchdog == "1":
            rec.deadline = now + rec.liveness_timeout
        elif watchdog == "trigger":
            rec.deadline = now
            rec.poke_watchdog()
