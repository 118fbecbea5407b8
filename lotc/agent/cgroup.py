"""One process's cgroups: join, signal, kill, freeze, limit, measure, remove (issue 16).

A process has one directory in each hierarchy of the agent's Layout
(cgroup_layout.py), all named alike. The child joins them between fork and
exec: it writes "0" (itself) to each cgroup.procs (spawn.py: through /bin/sh, or a
preexec function when it must also change user), so the program and everything it
ever forks is inside before the first instruction of the program runs.
A daemon that calls setsid() leaves the process group but never the cgroup.

The directory is named after the process, not the run: after an agent
restart the same path is the same process's cgroup. A directory left with
members by an earlier run is emptied before a new run joins it.

Without any cgroup (Layout "none") members are found by their marker: every
process a run starts inherits its NOTIFY_SOCKET, an abstract address unique
to that process record (runner.py), so a walk of /proc finds the escaped
ones too, unless they cleared their environment. The marker walk is used
for no other layout: it reads every process's environment.

All of it is blocking file I/O on cgroupfs (microseconds each): callers on
the trio thread keep to the short operations (signal, freeze, thaw) and run
the waits and walks in worker threads.
"""
from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import psutil

from lotc.agent.cgroup_layout import LIMIT_SOURCES, UNIFIED, Layout
from lotc.errors import SpawnFailed

__all__ = ["CgroupUsage", "Limits", "ProcessCgroup", "marked_members", "refuse_unenforced"]

logger = logging.getLogger(__name__)

CPU_PERIOD_US = 100_000  # the period of a --cpus quota (the kernel's default)
EMPTY_POLL = 0.002
KILL_ROUNDS = 50  # v1 without cgroup.kill: a fork bomb may refill between rounds


@dataclass(frozen=True)
class Limits:
    """What a process may hold; 0 for no limit."""

    memory: int = 0  # bytes
    cpu_milli: int = 0  # thousandths of a CPU
    max_pids: int = 0

    def values(self) -> dict[str, int]:
        return {"memory": self.memory, "cpus": self.cpu_milli, "max-pids": self.max_pids}


@dataclass(frozen=True)
class CgroupUsage:
    cpu_usec: int | None  # cumulative CPU time of every member that ever ran
    memory: int | None  # bytes charged now (v2 memory.current, v1 usage_in_bytes)
    memory_peak: int | None
    pids: list[int]  # the members now


def _write(path: Path, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _keyed(path: Path) -> dict[str, int]:
    """A flat-keyed cgroup file (cpu.stat, memory.events, cgroup.events, oom_control)."""
    values = {}
    try:
        for line in path.read_text().splitlines():
            key, _, value = line.partition(" ")
            if value.strip().lstrip("-").isdigit():
                values[key] = int(value)
    except OSError:
        pass
    return values


def _limit_text(limit: str, value: int, v2: bool) -> str:
    """What to write to the limit's file."""
    if limit == "cpus":
        quota = value * CPU_PERIOD_US // 1000
        return f"{quota} {CPU_PERIOD_US}" if v2 else str(quota)
    return str(value)


def refuse_unenforced(layout: Layout, limits: Limits) -> None:
    """SpawnFailed naming the controller when a limit asked for has none here."""
    for limit, value in limits.values().items():
        if value and layout.limit_file(limit) is None:
            raise SpawnFailed(f"--{limit} cannot be enforced here: this node has no "
                              f"{LIMIT_SOURCES[limit][0]} controller for the agent "
                              f"(cgroups: {layout.describe()})")


@dataclass(frozen=True)
class ProcessCgroup:
    layout: Layout
    dirs: dict[str, Path]  # hierarchy (UNIFIED or a v1 controller) -> this process's dir

    @classmethod
    def of(cls, layout: Layout, name: str, limits: Limits | None = None) -> ProcessCgroup | None:
        """The cgroups of process `name`: the membership hierarchy, the v1 freezer when
        that is how it stops, and the hierarchy of each limit asked for (a v1 directory
        per process costs a mkdir and an rmdir: only what is used). Without `limits`
        (re-adopting a running process), the directories that exist."""
        if not layout.contained:
            return None
        keys = {layout.membership()}
        if layout.freezer() == "freezer":
            keys.add("freezer")
        for limit, value in (limits or Limits()).values().items():
            where = layout.limit_file(limit)
            if value and where is not None:
                keys.add(where[0])
        dirs = {key: parent / f"proc-{name}" for key, parent in layout.parents.items()
                if key in keys or limits is None and (parent / f"proc-{name}").is_dir()}
        return cls(layout, dirs)

    # ---- before the spawn ----------------------------------------------------------
    def create(self, limits: Limits) -> None:
        """Make the directories and write the limits. Raises SpawnFailed naming a limit
        this node cannot enforce (never ignored) or a cgroup that cannot be made."""
        refuse_unenforced(self.layout, limits)
        try:
            for directory in self.dirs.values():
                directory.mkdir(exist_ok=True)
        except OSError as exc:
            raise SpawnFailed(f"cannot make the cgroup {exc.filename}: {exc.strerror}") from None
        if self.members():  # an earlier run's leftovers (the agent died mid-kill)
            self.kill_and_wait(2.0)
        for limit, value in limits.values().items():
            where = self.layout.limit_file(limit)
            if not value or where is None:
                continue
            hierarchy, name = where
            try:
                _write(self.dirs[hierarchy] / name,
                       _limit_text(limit, value, hierarchy == UNIFIED))
            except OSError as exc:
                raise SpawnFailed(f"cannot set --{limit} ({self.dirs[hierarchy] / name}: "
                                  f"{exc.strerror})") from None

    def procs_files(self) -> list[Path]:
        """The cgroup.procs of every directory: the child enters them before exec (it
        writes "0", itself, to each: spawn.py)."""
        return [directory / "cgroup.procs" for directory in self.dirs.values()]

    # ---- members and signals -------------------------------------------------------
    def _membership_dir(self) -> Path:
        return self.dirs[self.layout.membership()]

    def members(self) -> list[int]:
        try:
            text = (self._membership_dir() / "cgroup.procs").read_text()
        except OSError:
            return []
        return [int(pid) for pid in text.split()]

    def signal(self, sig: int) -> int:
        """Send `sig` to every member; how many got it."""
        sent = 0
        for pid in self.members():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
                sent += 1
        return sent

    def kill(self) -> None:
        """SIGKILL every member, also those forking meanwhile (cgroup.kill is atomic)."""
        if self.layout.can_kill():
            with contextlib.suppress(OSError):  # gone: nothing left to kill
                _write(self.dirs[UNIFIED] / "cgroup.kill", "1")
            return
        for _ in range(KILL_ROUNDS):  # v1: freeze so no member forks between the rounds
            frozen = self._v1_freeze("FROZEN")
            if not self.signal(signal.SIGKILL):
                break
            if frozen:
                self._v1_freeze("THAWED")  # v1 frozen tasks die only once thawed
        self._v1_freeze("THAWED")

    def kill_and_wait(self, timeout: float) -> bool:
        """Kill every member and wait (blocking) until none is left; False on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            self.kill()
            if not self.members():
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(EMPTY_POLL)

    # ---- stop and resume -----------------------------------------------------------
    def freeze(self, frozen: bool) -> bool:
        """Freeze (or thaw) the whole tree at once; False when there is no freezer."""
        how = self.layout.freezer()
        if how == "cgroup.freeze":
            try:
                _write(self.dirs[UNIFIED] / "cgroup.freeze", "1" if frozen else "0")
            except OSError:  # the run is ending and its cgroup going: signals will do
                return False
            return True
        if how == "freezer":
            return self._v1_freeze("FROZEN" if frozen else "THAWED")
        return False

    def _v1_freeze(self, state: str) -> bool:
        directory = self.dirs.get("freezer")
        if directory is None:
            return False
        with contextlib.suppress(OSError):
            _write(directory / "freezer.state", state)
            return True
        return False

    def frozen(self) -> bool | None:
        """Is the freeze complete? None when this cgroup cannot be frozen."""
        how = self.layout.freezer()
        if how == "cgroup.freeze":
            return _keyed(self.dirs[UNIFIED] / "cgroup.events").get("frozen") == 1
        if how == "freezer":
            try:
                return (self.dirs["freezer"] / "freezer.state").read_text().strip() == "FROZEN"
            except OSError:
                return None
        return None

    def wants_frozen(self) -> bool:
        """Was a freeze asked for (whether complete or not)? For re-adoption."""
        how = self.layout.freezer()
        if how == "cgroup.freeze":
            return _read_int(self.dirs[UNIFIED] / "cgroup.freeze") == 1
        if how == "freezer":
            try:
                state = (self.dirs["freezer"] / "freezer.state").read_text().strip()
            except OSError:
                return False
            return state in ("FROZEN", "FREEZING")
        return False

    # ---- measures and the end ------------------------------------------------------
    def oom_kills(self) -> int:
        """How many members the kernel killed for the memory limit, since creation."""
        where = self.layout.limit_file("memory")
        if where is None or where[0] not in self.dirs:
            return 0
        hierarchy, _ = where
        name = "memory.events" if hierarchy == UNIFIED else "memory.oom_control"
        return _keyed(self.dirs[hierarchy] / name).get("oom_kill", 0)

    def usage(self) -> CgroupUsage:
        cpu = _keyed(self.dirs[UNIFIED] / "cpu.stat").get("usage_usec") \
            if UNIFIED in self.dirs else None
        if cpu is None and "cpu" in self.dirs:  # v1: cpuacct is often mounted with cpu
            nanos = _read_int(self.dirs["cpu"] / "cpuacct.usage")
            cpu = None if nanos is None else nanos // 1000
        memory = peak = None
        where = self.layout.limit_file("memory")
        if where is not None and where[0] in self.dirs:
            hierarchy, _ = where
            directory = self.dirs[hierarchy]
            if hierarchy == UNIFIED:
                memory = _read_int(directory / "memory.current")
                peak = _read_int(directory / "memory.peak")
            else:
                memory = _read_int(directory / "memory.usage_in_bytes")
                peak = _read_int(directory / "memory.max_usage_in_bytes")
        return CgroupUsage(cpu, memory, peak, self.members())

    def remove(self) -> None:
        """Remove the directories (they must be empty: kill_and_wait first)."""
        for directory in self.dirs.values():
            try:
                directory.rmdir()
            except FileNotFoundError:
                pass
            except OSError as exc:
                logger.warning("cannot remove the cgroup %s: %s", directory, exc.strerror)


def marked_members(marker: str, also: Iterable[int] = ()) -> list[int]:
    """Processes whose NOTIFY_SOCKET is `marker` (Layout "none"), plus `also`. Blocking:
    it reads the environment of every process this user may read."""
    found = set(also)
    needle = f"NOTIFY_SOCKET={marker}"
    for pid in psutil.pids():
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                if needle.encode() in f.read().split(b"\0"):
                    found.add(pid)
        except OSError:
            continue
    return sorted(found)
