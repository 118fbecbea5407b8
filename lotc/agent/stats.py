"""Node and per-process-tree statistics, sampled with psutil off the trio loop.

Theory of operation: psutil's CPU percentages are deltas between two calls on
the same object, so the sampler keeps its psutil.Process objects from one
sample to the next, keyed by (pid, create time) so a reused pid is never
mistaken for the old process. The first sample of a process primes it and
reports 0 % CPU. Each sample scans the process table once and builds each
managed process's tree from it: the root, its descendants by parent pid, and,
when the root leads its own session (as the supervisor starts them), every
process still in that session, which catches daemonized grandchildren whose
parent already exited. Processes that vanish or turn zombie mid-sample are
dropped silently; psutil's work runs in `trio.to_thread.run_sync`.

Units: process cpu_percent is in percent of one core (like top: 200 = two
cores busy); the node's cpu_percent is over all cores (0-100). Disk and
network byte counts are cumulative since boot (the server derives rates).
"""
from __future__ import annotations

import logging
import os
import threading
import time
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import psutil
import trio

from lotc.agent.cgroup import ProcessCgroup

__all__ = ["NodeStats", "ProcessStats", "StatsSampler"]

logger = logging.getLogger(__name__)

_GONE = (psutil.NoSuchProcess, psutil.ZombieProcess)


@dataclass(frozen=True)
class NodeStats:
    cpu_percent: float
    mem_total: int
    mem_used: int  # total - available, consistent with mem_percent
    mem_percent: float
    swap_used: int
    disk_read_bytes: int
    disk_write_bytes: int
    net_sent_bytes: int
    net_recv_bytes: int
    load1: float
    load5: float
    load15: float
    disk_used: int  # of the filesystem holding the agent's state dir
    disk_total: int
    uptime_s: int


@dataclass(frozen=True)
class ProcessStats:
    """A managed process's whole tree, summed; restarts and liveness come from the supervisor."""

    name: str
    pid: int
    cpu_percent: float
    rss: int
    threads: int
    open_files: int  # open file descriptors of the whole tree (files, pipes, sockets)
    num_children: int  # processes in the tree besides the root
    restarts: int = 0
    last_liveness_us: int = 0


@dataclass(frozen=True)
class _Row:
    proc: psutil.Process
    ppid: int
    zombie: bool


@dataclass
class _Totals:
    cpu: float = 0.0
    rss: int = 0
    threads: int = 0
    fds: int = 0


class StatsSampler:
    def __init__(self, state_dir: Path) -> None:
        self.state_dir = Path(state_dir)
        self._procs: dict[tuple[int, float], psutil.Process] = {}
        self._lock = threading.Lock()  # samples may overlap if a caller is impatient
        self._cpu_usec: dict[tuple[str, int], tuple[int, float]] = {}  # last cpu.stat read
        psutil.cpu_percent(interval=None)  # prime: the next call measures from here

    async def sample(self, pids: Mapping[str, int],
                     restarts: Mapping[str, int] | None = None,
                     last_liveness_us: Mapping[str, int] | None = None,
                     cgroups: Mapping[str, ProcessCgroup] | None = None,
                     ) -> tuple[NodeStats, dict[str, ProcessStats]]:
        """Node stats and one ProcessStats per name whose root pid still runs; a name
        with a cgroup is measured from it (see _from_cgroup)."""
        return await trio.to_thread.run_sync(
            self.sample_sync, pids, restarts or {}, last_liveness_us or {}, cgroups or {})

    def sample_sync(self, pids: Mapping[str, int],
                    restarts: Mapping[str, int] | None = None,
                    last_liveness_us: Mapping[str, int] | None = None,
                    cgroups: Mapping[str, ProcessCgroup] | None = None,
                    ) -> tuple[NodeStats, dict[str, ProcessStats]]:
        restarts, liveness, cgroups = restarts or {}, last_liveness_us or {}, cgroups or {}
        with self._lock:
            walked = {name: pid for name, pid in pids.items() if name not in cgroups}
            result = self._process_stats(walked, restarts, liveness) if walked else {}
            for name, cgroup in cgroups.items():
                if name in pids:
                    result[name] = self._from_cgroup(name, pids[name], cgroup, restarts,
                                                     liveness)
            live = {(name, pid) for name, pid in pids.items()}
            self._cpu_usec = {k: v for k, v in self._cpu_usec.items() if k in live}
            return self.node_stats(), result

    def _from_cgroup(self, name: str, root: int, cgroup: ProcessCgroup,
                     restarts: Mapping[str, int],
                     liveness: Mapping[str, int]) -> ProcessStats:
        """The whole tree from its cgroup, escaped children included, without a scan of
        the process table: CPU from cpu.stat's usage between two samples, memory from
        the memory controller's charge (page cache included, as the limit counts it;
        the members' RSS where no memory controller), threads and descriptors per member
        from /proc."""
        usage = cgroup.usage()
        now = time.monotonic()
        cpu = 0.0
        previous = self._cpu_usec.get((name, root))
        if usage.cpu_usec is not None:
            if previous is not None and now > previous[1]:
                cpu = max(0.0, (usage.cpu_usec - previous[0]) / ((now - previous[1]) * 1e4))
            self._cpu_usec[(name, root)] = (usage.cpu_usec, now)
        threads = fds = rss = 0
        for pid in usage.pids:
            counts = _proc_counts(pid)
            threads, fds, rss = threads + counts[0], fds + counts[1], rss + counts[2]
        return ProcessStats(
            name=name, pid=root, cpu_percent=cpu,
            rss=usage.memory if usage.memory is not None else rss, threads=threads,
            open_files=fds, num_children=max(0, len(usage.pids) - 1),
            restarts=restarts.get(name, 0), last_liveness_us=liveness.get(name, 0))

    def node_stats(self) -> NodeStats:
        vm = psutil.virtual_memory()
        disk_io = psutil.disk_io_counters()  # None where the kernel exposes no disks
        net_io = psutil.net_io_counters()
        usage = psutil.disk_usage(str(self.state_dir))
        load1, load5, load15 = os.getloadavg()
        return NodeStats(
            cpu_percent=psutil.cpu_percent(interval=None),
            mem_total=vm.total, mem_used=vm.total - vm.available, mem_percent=vm.percent,
            swap_used=psutil.swap_memory().used,
            disk_read_bytes=disk_io.read_bytes if disk_io else 0,
            disk_write_bytes=disk_io.write_bytes if disk_io else 0,
            net_sent_bytes=net_io.bytes_sent if net_io else 0,
            net_recv_bytes=net_io.bytes_recv if net_io else 0,
            load1=load1, load5=load5, load15=load15,
            disk_used=usage.used, disk_total=usage.total,
            uptime_s=max(0, int(time.time() - psutil.boot_time())),
        )

    def _process_stats(self, pids: Mapping[str, int], restarts: Mapping[str, int],
                       liveness: Mapping[str, int]) -> dict[str, ProcessStats]:
        table = self._scan()
        children: dict[int, list[int]] = defaultdict(list)
        for pid, row in table.items():
            children[row.ppid].append(pid)
        result: dict[str, ProcessStats] = {}
        for name, root in pids.items():
            root_row = table.get(root)
            if root_row is None or root_row.zombie:
                continue  # vanished, or exited and not yet reaped by the supervisor
            tree = self._tree(root, table, children)
            totals = _Totals()
            for pid in tree:
                _add_process(totals, table[pid].proc)
            result[name] = ProcessStats(
                name=name, pid=root, cpu_percent=totals.cpu, rss=totals.rss,
                threads=totals.threads, open_files=totals.fds, num_children=len(tree) - 1,
                restarts=restarts.get(name, 0), last_liveness_us=liveness.get(name, 0))
        return result

    def _scan(self) -> dict[int, _Row]:
        """One pass over the process table, reusing the psutil objects of earlier samples."""
        table: dict[int, _Row] = {}
        seen: dict[tuple[int, float], psutil.Process] = {}
        for proc in psutil.process_iter(["ppid", "create_time", "status"]):
            info = proc.info
            if info["ppid"] is None or info["create_time"] is None:
                continue  # vanished during the scan, or not ours to read
            key = (proc.pid, info["create_time"])
            kept = self._procs.get(key, proc)
            seen[key] = kept
            table[proc.pid] = _Row(kept, info["ppid"], info["status"] == psutil.STATUS_ZOMBIE)
        self._procs = seen  # forget processes that are gone
        return table

    @staticmethod
    def _tree(root: int, table: Mapping[int, _Row],
              children: Mapping[int, list[int]]) -> list[int]:
        tree = [root]
        members = {root}
        if _session_of(root) == root:  # a session leader: its session is its tree
            for pid in table:
                if pid not in members and _session_of(pid) == root:
                    members.add(pid)
                    tree.append(pid)
        queue = [root]
        while queue:
            for child in children.get(queue.pop(), ()):
                if child not in members:
                    members.add(child)
                    tree.append(child)
                    queue.append(child)
        return [pid for pid in tree if not table[pid].zombie or pid == root]


_PAGE = os.sysconf("SC_PAGE_SIZE")


def _proc_counts(pid: int) -> tuple[int, int, int]:
    """(threads, open descriptors, RSS bytes) of one process from /proc; zeros if gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        threads, rss = int(fields[17]), int(fields[21]) * _PAGE
    except (OSError, ValueError, IndexError):
        return 0, 0, 0
    try:
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:  # another user's process: its descriptors are not ours to count
        fds = 0
    return threads, fds, rss


def _session_of(pid: int) -> int | None:
    try:
        return os.getsid(pid)
    except OSError:  # gone, or in another pid namespace
        return None


def _add_process(totals: _Totals, proc: psutil.Process) -> None:
    try:
        with proc.oneshot():
            totals.cpu += proc.cpu_percent(interval=None)
            totals.rss += proc.memory_info().rss
            totals.threads += proc.num_threads()
            try:
                totals.fds += proc.num_fds()
            except psutil.AccessDenied:
                pass  # another user's process: its descriptors are not ours to count
    except _GONE:
        return  # ended during the sample: it no longer counts
    except psutil.AccessDenied:
        logger.debug("no access to stats of pid %d", proc.pid)
