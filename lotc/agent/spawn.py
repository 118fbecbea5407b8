"""Starting, watching and signalling one process group (Linux: pidfd, sessions).

Every process is started with `start_new_session=True`: the child calls
setsid() between fork and exec, so from the moment Popen returns (it returns
only after the exec succeeded or failed) the process group with id == pid
exists, and `os.killpg(pid, sig)` reaches the program and all its descendants
that did not leave the group. Signals asked for before the pid is known are
queued by the caller and delivered right after spawn (see runner.py): that,
and the fact that Popen returns only after exec, is why no signal is lost.

The end of a run is watched through a pidfd (`os.pidfd_open`), which works for
our own children and for processes we re-adopt after an agent restart (which
are not our children, so their exit status is unknown). When the leader ends,
what remains of its group is SIGKILLed before the leader is reaped: while the
zombie exists its pid cannot be reused, so the kill cannot hit a stranger,
and restarts never pile up orphaned grandchildren.
"""
from __future__ import annotations

import logging
import math
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import trio

from lotc.agent import identity as child_identity
from lotc.agent.cgroup import ProcessCgroup
from lotc.agent.pipe import PipeRecord, attach, make_pipe, record_of
from lotc.errors import SpawnFailed
from protocol.enums import StreamKind

__all__ = ["ChildHandle", "adopt", "signal_group", "spawn"]

logger = logging.getLogger(__name__)

_CREATE_TIME_SLACK = 0.05  # psutil derives create_time from clock ticks + boot time
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def signal_group(pgid: int, sig: int) -> bool:
    """Send `sig` to the process group; False if the group is gone."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:
        logger.warning("not allowed to signal process group %d", pgid)
        return False
    return True


@dataclass(eq=False)
class ChildHandle:
    """A live process group leader we can wait for, and its pidfd."""

    pid: int
    pidfd: int
    create_time: float
    popen: subprocess.Popen[bytes] | None = None  # None: re-adopted, not our child
    pipes: dict[StreamKind, int] = field(default_factory=dict)  # our read ends, to pump
    start_ticks: int | None = None  # see start_ticks()
    cgroup: ProcessCgroup | None = None  # the run's cgroups (cgroup.py), None without
    _closed: bool = field(default=False, repr=False)

    async def wait(self) -> tuple[int | None, int | None]:
        """Wait for the leader to end; (exit code, signal), both None when unknown."""
        await trio.lowlevel.wait_readable(self.pidfd)
        signal_group(self.pid, signal.SIGKILL)  # leftovers of the group, see module doc
        if self.cgroup is not None:  # and those that left the group (the runner waits)
            self.cgroup.kill()
        status = self._reap()
        if status is None:
            return None, None
        return (status, None) if status >= 0 else (None, -status)

    def _reap(self) -> int | None:
        if self.popen is not None:
            return self.popen.wait()
        try:  # a re-adopted process may still be our child (same agent process)
            pid, raw = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:
            return None
        return os.waitstatus_to_exitcode(raw) if pid else None

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            for fd in (self.pidfd, *self.pipes.values()):
                trio.lowlevel.notify_closing(fd)
                os.close(fd)

    def pipe_records(self) -> dict[StreamKind, PipeRecord]:
        """What a later agent needs to find these pipes again (see pipe.py)."""
        return {stream: record_of(fd) for stream, fd in self.pipes.items()}


def start_ticks(pid: int) -> int | None:
    """When `pid` started, in clock ticks since boot (/proc/PID/stat field 22), None if
    gone. Exact and on the boot clock: unlike psutil's create_time (these ticks plus the
    boot time, which is derived from the wall clock), a stepped clock cannot change it."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return int(f.read().rsplit(b")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def _create_time(pid: int) -> float:
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return 0.0


_STD_FD = {StreamKind.STDOUT: 1, StreamKind.STDERR: 2}


def _preexec(identity: child_identity.Identity,
             join: Sequence[int]) -> Callable[[], None] | None:
    """What the child does between fork and exec; None when nothing (Popen may vfork).
    It joins its cgroups first (writing "0", itself, to each cgroup.procs): after the
    setuid below it might not be allowed to."""
    if not identity.changes_child and not join:
        return None

    def preexec() -> None:
        for fd in join:
            os.write(fd, b"0")
        child_identity.apply(identity)
    return preexec


# Joining cgroups between fork and exec has a price: a preexec function makes Popen fork
# (not vfork) and run Python in the child, about 3 ms more per start here, which alone
# made a start twice bare Popen's (docs/performance.md). A child that needs nothing else
# before exec goes through /bin/sh instead: vfork, then sh writes "0" (itself) to each
# cgroup.procs and execs the program, which so starts inside, as with the preexec. sh
# looks the program up on the same PATH from the same directory and keeps argv[0]; the
# agent looks first, so a missing program is still refused at once. One difference: a
# file with no #! line and no ELF header is run by sh as a script, where exec refuses it.
JOIN_SHELL = "/bin/sh"
_JOIN_SCRIPT = ('while [ "$1" != -- ]; do echo 0 >"$1" || exit 126; shift; done; '
                'shift; exec "$@"')


def _check_program(program: str, cwd: Path, env: Mapping[str, str]) -> None:
    """SpawnFailed, in exec's words, when `program` would not be found or run."""
    places = [cwd / program] if "/" in program else \
        [Path(directory) / program for directory in os.get_exec_path(dict(env))]
    found = [place for place in places if place.is_file()]
    if not found:
        raise SpawnFailed(f"cannot start {program!r}: {program}: No such file or directory")
    if not any(os.access(place, os.X_OK) for place in found):
        raise SpawnFailed(f"cannot start {program!r}: {program}: Permission denied")


def _open_all(paths: Sequence[Path]) -> list[int]:
    fds: list[int] = []
    try:
        for path in paths:
            fds.append(os.open(path, os.O_WRONLY | os.O_CLOEXEC))
    except OSError as exc:
        for fd in fds:
            os.close(fd)
        raise SpawnFailed(f"cannot join the cgroup {exc.filename}: {exc.strerror}") from None
    return fds


def spawn(argv: Sequence[str], cwd: Path, env: Mapping[str, str],
          identity: child_identity.Identity | None = None,
          cgroup_procs: Sequence[Path] = ()) -> ChildHandle:
    """Start `argv` in a new session with its output on pipes (see pipe.py). Blocking.

    `identity` (identity.py) is who the child becomes before exec; it enters the
    cgroups of `cgroup_procs` (their cgroup.procs files, cgroup.py) before exec too.
    Raises SpawnFailed (missing program, not executable, bad cwd, a user or limit
    refused...).
    """
    identity = identity or child_identity.Identity()
    command, join = list(argv), []
    if cgroup_procs and identity.changes_child:
        join = _open_all(cgroup_procs)  # written by the preexec, before it drops root
    elif cgroup_procs:
        _check_program(argv[0], cwd, env)
        command = [JOIN_SHELL, "-c", _JOIN_SCRIPT, "lotc-join", *map(str, cgroup_procs),
                   "--", *argv]
    try:
        return _popen(argv, command, cwd, env, _preexec(identity, join))
    finally:
        for fd in join:
            os.close(fd)


def _popen(argv: Sequence[str], command: list[str], cwd: Path, env: Mapping[str, str],
           preexec: Callable[[], None] | None) -> ChildHandle:
    ends = {stream: make_pipe() for stream in _STD_FD}
    reads = {stream: read for stream, (read, _write) in ends.items()}
    try:
        popen = subprocess.Popen(
            command, cwd=cwd, env=dict(env), stdin=subprocess.DEVNULL,
            stdout=ends[StreamKind.STDOUT][1], stderr=ends[StreamKind.STDERR][1],
            pass_fds=tuple(reads.values()),  # the holders: see pipe.py
            start_new_session=True, close_fds=True,
            # Safe with threads here: the preexec makes system calls on values worked
            # out before the fork, takes no lock and allocates nothing (identity.py).
            preexec_fn=preexec,  # noqa: PLW1509
        )
    except subprocess.SubprocessError as exc:  # the preexec failed: its words
        for fd in reads.values():
            os.close(fd)
        raise SpawnFailed(f"cannot start {argv[0]!r}: {exc}") from None
    except OSError as exc:
        for fd in reads.values():
            os.close(fd)
        where = exc.filename if exc.filename is not None else argv[0]
        raise SpawnFailed(f"cannot start {argv[0]!r}: {where}: {exc.strerror}") from None
    finally:
        for _read, write in ends.values():
            os.close(write)
    # Our unreaped child: its pid cannot be reused before we wait for it.
    pidfd = os.pidfd_open(popen.pid)
    return ChildHandle(popen.pid, pidfd, _create_time(popen.pid), popen, reads,
                       start_ticks(popen.pid))


# An orphan still inside its execve() shows an empty environment: the new memory image is
# in place, its arguments and environment are not copied in yet (measured here: 19 of 300
# children read right after Popen returned, under two CPU hogs). Such a session leader is
# looked at again until it is this old; an older one with no environment has none.
EXEC_SETTLE = 2.0  # seconds since the process started
_SETTLE_POLL = 0.005


def _marker(pid: int) -> str | None:
    """The NOTIFY_SOCKET of a session leader; "" while its exec is not finished; None
    when it is not a session leader (or is gone, or has no such variable)."""
    try:
        if os.getsid(pid) != pid:
            return None
        environ = psutil.Process(pid).environ()
    except (psutil.Error, OSError):
        return None
    return environ.get("NOTIFY_SOCKET") if environ else ""


def _age(pid: int) -> float:
    """Seconds since `pid` started, on the boot clock."""
    ticks = start_ticks(pid)
    try:
        with open("/proc/uptime", "rb") as f:
            uptime = float(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return math.inf
    return math.inf if ticks is None else uptime - ticks / _CLOCK_TICKS


def _start_time(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def find_orphan(notify_address: str) -> tuple[int, float, int | None] | None:
    """A session leader an earlier agent started but died before recording its pid. Blocking.

    Each record has its own NOTIFY_SOCKET name, given to its process only, so a session
    leader carrying that name in its environment is that record's process. A session
    leader still in its exec (see EXEC_SETTLE) is waited for, not passed over: the agent
    may have died right after the spawn, and a second copy would then be started (the
    race of issue 14, item 12).

    Every candidate is looked at through a fresh `psutil.Process`, never through
    `psutil.process_iter`: that keeps one object per pid across calls (the stats sampler
    calls it too), with the start time read when the pid was first seen. pid_max is
    often 32768, so pids wrap within minutes on a busy node: the orphan's pid may be
    cached with the start time of the stranger that held it before.
    """
    settling = []
    for pid in psutil.pids():
        marker = _marker(pid)
        if marker == notify_address and (started := _start_time(pid)) is not None:
            return pid, started, start_ticks(pid)
        if marker == "" and _age(pid) < EXEC_SETTLE:
            settling.append(pid)
    while settling:
        time.sleep(_SETTLE_POLL)
        for pid in list(settling):
            marker = _marker(pid)
            if marker == notify_address and (started := _start_time(pid)) is not None:
                return pid, started, start_ticks(pid)
            if marker != "" or _age(pid) >= EXEC_SETTLE:
                settling.remove(pid)
    return None


def _same_start(pid: int, proc: psutil.Process, create_time: float,
                ticks: int | None) -> bool:
    """Is `pid` still the process that started then? On the boot clock when the record
    has it; records of earlier agents have only the wall-clock start time."""
    if ticks is not None:
        return start_ticks(pid) == ticks
    return abs(proc.create_time() - create_time) <= _CREATE_TIME_SLACK


def adopt(pid: int, create_time: float, pipes: Mapping[StreamKind, PipeRecord],
          ticks: int | None = None) -> tuple[ChildHandle, bool] | None:
    """Take back a group leader left running by an earlier agent, and its output pipes.
    Blocking.

    Returns (handle, suspended), or None if `pid` is gone or is now somebody
    else (another start time, or not a session leader any more).
    """
    try:
        pidfd = os.pidfd_open(pid)
    except (ProcessLookupError, OSError):
        return None
    try:
        proc = psutil.Process(pid)
        # Checked after pidfd_open: the pidfd pins this pid to the process we check.
        same = _same_start(pid, proc, create_time, ticks)
        if not same or os.getsid(pid) != pid or proc.status() == psutil.STATUS_ZOMBIE:
            os.close(pidfd)
            return None
        suspended = proc.status() == psutil.STATUS_STOPPED
    except (psutil.Error, OSError):
        os.close(pidfd)
        return None
    reads = {}
    for stream, saved in pipes.items():
        fd = attach(pid, saved, _STD_FD[stream])
        if fd is None:
            logger.warning("pid %d: its %s pipe is gone; that output is lost", pid,
                           stream.name.lower())
        else:
            reads[stream] = fd
    return ChildHandle(pid, pidfd, create_time, pipes=reads, start_ticks=ticks), suspended
