"""Stats sampling with real processes: CPU of a busy child, RSS of a whole tree, vanished pids."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import trio

from lotc.agent.stats import NodeStats, ProcessStats, StatsSampler

MIB = 1024 * 1024
POLL_S = 0.1  # between polls; every wait is bounded by a deadline


@pytest.fixture
def spawned() -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for proc in procs:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # each child leads its own session
        except ProcessLookupError:
            pass
        proc.wait(timeout=10)


def _spawn(procs: list[subprocess.Popen[bytes]], code: str) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                            start_new_session=True)
    procs.append(proc)
    return proc


async def _read_line(proc: subprocess.Popen[bytes]) -> bytes:
    assert proc.stdout is not None
    with trio.fail_after(20):
        return await trio.to_thread.run_sync(proc.stdout.readline, abandon_on_cancel=True)


async def test_node_stats_are_sane(tmp_path: Path) -> None:
    node, procs = await StatsSampler(tmp_path).sample({})
    assert isinstance(node, NodeStats) and procs == {}
    assert node.mem_total > node.mem_used > 0 and 0 < node.mem_percent <= 100
    assert 0.0 <= node.cpu_percent <= 100.0
    assert node.disk_total > node.disk_used > 0 and node.uptime_s > 0
    assert node.net_sent_bytes >= 0 and node.load1 >= 0


async def test_busy_child_shows_cpu(tmp_path: Path, spawned: list[subprocess.Popen[bytes]]) -> None:
    busy = _spawn(spawned, "while True: pass")
    sampler = StatsSampler(tmp_path)
    best = 0.0
    with trio.fail_after(20):
        while best < 20.0:  # a loaded 2-core CI box may give it little more
            _node, procs = await sampler.sample({"busy": busy.pid})
            best = max(best, procs["busy"].cpu_percent)
            await trio.sleep(POLL_S)
    assert procs["busy"].pid == busy.pid and procs["busy"].threads >= 1


_PARENT = f"""
import subprocess, sys, time
held = b"p" * (40 * {MIB})
child = subprocess.Popen([sys.executable, "-c",
    "import sys, time\\nheld = b'c' * (60 * {MIB})\\nprint('ready', flush=True)\\ntime.sleep(600)"],
    stdout=subprocess.PIPE)
child.stdout.readline()
print(child.pid, flush=True)
time.sleep(600)
"""


async def test_tree_sums_child_and_grandchild(tmp_path: Path,
                                              spawned: list[subprocess.Popen[bytes]]) -> None:
    parent = _spawn(spawned, _PARENT)
    grandchild = int(await _read_line(parent))
    stats = (await StatsSampler(tmp_path).sample({"tree": parent.pid}))[1]["tree"]
    assert stats.num_children == 1
    assert stats.rss >= 100 * MIB
    own = psutil.Process(parent.pid).memory_info().rss + psutil.Process(
        grandchild).memory_info().rss
    assert abs(stats.rss - own) < 10 * MIB
    assert stats.threads >= 2 and stats.open_files >= 3


_ORPHANER = """
import os, subprocess, sys, time
middle = subprocess.Popen([sys.executable, "-c",
    "import subprocess, sys; p = subprocess.Popen([sys.executable, '-c', "
    "'import time; time.sleep(600)']); print(p.pid, flush=True)"], stdout=subprocess.PIPE)
print(middle.stdout.readline().decode().strip(), flush=True)
middle.wait()
print("orphaned", flush=True)
time.sleep(600)
"""


async def test_orphan_in_the_session_still_counts(tmp_path: Path,
                                                  spawned: list[subprocess.Popen[bytes]]) -> None:
    root = _spawn(spawned, _ORPHANER)
    orphan = int(await _read_line(root))
    assert await _read_line(root) == b"orphaned\n"
    assert psutil.Process(orphan).ppid() != root.pid, "reparented away from the root"
    stats = (await StatsSampler(tmp_path).sample({"root": root.pid}))[1]["root"]
    assert stats.num_children == 1


async def test_vanished_and_zombie_pids_dropped(tmp_path: Path,
                                                spawned: list[subprocess.Popen[bytes]]) -> None:
    gone = await trio.run_process([sys.executable, "-c", "import os; print(os.getpid())"],
                                  capture_stdout=True)
    zombie = _spawn(spawned, "pass")  # exits at once and stays unreaped
    with trio.fail_after(20):
        while psutil.Process(zombie.pid).status() != psutil.STATUS_ZOMBIE:
            await trio.sleep(POLL_S)
    alive = _spawn(spawned, "import time; time.sleep(600)")
    sampler = StatsSampler(tmp_path)
    pids = {"gone": int(gone.stdout), "zombie": zombie.pid, "alive": alive.pid}
    _node, procs = await sampler.sample(pids, restarts={"alive": 3},
                                        last_liveness_us={"alive": 1234})
    assert set(procs) == {"alive"}
    assert procs["alive"] == ProcessStats("alive", alive.pid, procs["alive"].cpu_percent,
                                          procs["alive"].rss, procs["alive"].threads,
                                          procs["alive"].open_files, 0, 3, 1234)
    alive.kill()
    alive.wait()
    assert (await sampler.sample(pids))[1] == {}


async def test_sampling_runs_off_the_trio_loop(tmp_path: Path) -> None:
    sampler = StatsSampler(tmp_path)
    release = threading.Event()
    real = sampler.sample_sync

    def blocking_sample(*args: object) -> tuple[NodeStats, dict[str, ProcessStats]]:
        # if this ran on the trio thread, the task that sets `release` could never run
        if not release.wait(timeout=20):
            raise AssertionError("the trio loop was blocked during sampling")
        return real(*args)  # type: ignore[arg-type]

    async def set_release() -> None:
        release.set()

    sampler.sample_sync = blocking_sample  # type: ignore[method-assign,assignment]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(set_release)
        with trio.fail_after(20):
            node, _procs = await sampler.sample({})
    assert node.mem_total > 0
