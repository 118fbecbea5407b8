"""Each process in its own cgroup, on this machine's real cgroups (issue 16, items 1-6, 11).

This machine is the hybrid layout: cgroup2 at /sys/fs/cgroup/unified (cgroup.kill,
cgroup.freeze, cgroup.events, cpu.stat) beside the v1 memory, pids and cpu
hierarchies. The tests drive a real Supervisor over the layout the agent finds
(`detect`), with real programs: one that daemonizes (it double-forks a setsid child
that ignores SIGTERM), one that allocates 200 MB under a 50M limit, one that forks
past --max-pids. Paths this machine cannot run are in tests/unit/test_cgroup_layout.py,
over a directory tree shaped like cgroupfs.
"""
# ruff: noqa: F811  (pytest fixtures imported from tests.agent_helpers, then used as arguments)
from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import psutil
import pytest
import trio

from lotc.agent.cgroup_layout import UNIFIED, Layout, detect
from lotc.agent.lifecycle import ProcessEvent
from lotc.agent.process import ProcessSpec
from lotc.agent.stats import StatsSampler
from lotc.agent.supervisor import Supervisor
from lotc.errors import SpawnFailed
from protocol.enums import EventKind, ProcessState, RestartPolicy
from tests.agent_helpers import (  # noqa: F401
    PY,
    Harness,
    alive,
    bundle,
    remove_agent_cgroups,
    wait_until,
)

S = ProcessState
ENDED = (S.EXITED, S.FAILED)
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="real cgroups need root")

DAEMON = """
import os, pathlib, signal, sys, time
if os.fork() == 0:
    os.setsid()  # leaves the process group: only the cgroup still holds it
    if os.fork() == 0:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        n = 0
        while True:
            n += 1
            pathlib.Path("daemon.tmp").write_text(f"{os.getpid()} {n}")
            os.replace("daemon.tmp", "daemon.pid")
            time.sleep(0.01)
    os._exit(0)
while True:
    time.sleep(1)
"""


@pytest.fixture
async def csup(tmp_path: Path, bundle: Path) -> AsyncIterator[Harness]:
    """A running Supervisor on the node's real cgroups; nothing of it is left after."""
    events: list[ProcessEvent] = []
    state = tmp_path / "state"
    layout = detect(state)
    supervisor = Supervisor(state, lambda name: bundle, events.append, layout=layout)
    async with trio.open_nursery() as nursery:
        await nursery.start(supervisor.run)
        try:
            yield Harness(supervisor, bundle, state, events)
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(10):
                await supervisor.terminate_all(grace=1)
            nursery.cancel_scope.cancel()
    remove_agent_cgroups(state)


def _daemon(h: Harness) -> tuple[int, int]:
    """(daemon pid, its counter), once it has written them."""
    text = (h.bundle_dir / "daemon.pid").read_text() \
        if (h.bundle_dir / "daemon.pid").exists() else ""
    pid, _, count = text.partition(" ")
    return (int(pid), int(count)) if count else (0, 0)


def _marked(marker: str) -> list[int]:
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get("NOTIFY_SOCKET") == marker and alive(proc.pid):
                found.append(proc.pid)
        except psutil.Error:
            continue
    return found


async def _start_daemon(h: Harness, name: str = "d") -> int:
    (h.bundle_dir / "daemon.pid").unlink(missing_ok=True)
    h.program("daemon.py", DAEMON)
    await h.sup.start(ProcessSpec(name, "b", [PY, "daemon.py"], grace=0.5,
                                  restart=RestartPolicy.NEVER))
    daemon = (await wait_until(lambda: _daemon(h)[0]))
    info = h.sup.get(name)
    assert os.getsid(daemon) != info.pid  # it escaped the process group and session
    return daemon


def _cgroup_dirs(h: Harness, name: str) -> list[Path]:
    return [parent / f"proc-{name}" for parent in h.sup.layout.parents.values()]


async def _assert_nothing_left(h: Harness, name: str, daemon: int) -> None:
    await wait_until(lambda: not alive(daemon))
    marker = h.sup._records[name].notify_address
    await wait_until(lambda: not _marked(marker))
    await wait_until(lambda: not any(d.exists() for d in _cgroup_dirs(h, name)))


async def test_the_layout_of_this_machine_is_found(csup: Harness) -> None:
    layout = csup.sup.layout
    assert layout.kind == "hybrid", layout
    assert set(layout.parents) >= {UNIFIED, "memory", "pids", "cpu"}
    assert layout.can_kill() and layout.freezer() == "cgroup.freeze"
    assert "limits: memory, cpus, max-pids" in layout.describe()
    assert "cgroup:hybrid" in layout.capabilities()


async def test_a_daemonizing_program_leaves_nothing_after_terminate_kill_restart(
        csup: Harness) -> None:
    h = csup
    daemon = await _start_daemon(h)
    assert set(h.sup._records["d"].cgroup.members()) >= {h.sup.get("d").pid, daemon}
    await h.sup.terminate("d")
    await _assert_nothing_left(h, "d", daemon)

    daemon = await _start_daemon(h)
    await h.sup.kill("d")
    await h.sup.wait_state("d", ENDED, 5)
    await _assert_nothing_left(h, "d", daemon)

    daemon = await _start_daemon(h)
    await h.sup.restart("d")
    await wait_until(lambda: not alive(daemon))  # the old one went with the old run
    # the file is the old daemon's until the new one writes it (every 10 ms)
    new_daemon = await wait_until(lambda: _daemon(h)[0] not in (0, daemon) and _daemon(h)[0])
    assert alive(new_daemon)
    assert new_daemon in h.sup._records["d"].cgroup.members()


async def test_stop_freezes_the_whole_tree_and_resume_thaws_it(csup: Harness) -> None:
    h = csup
    daemon = await _start_daemon(h)
    await h.sup.stop("d")
    stopped = [e.reason for e in h.events if e.new_state == S.STOPPED][-1]
    assert "cgroup.freeze: frozen, 2 processes" in stopped, stopped
    events = (h.sup._records["d"].cgroup.dirs[UNIFIED] / "cgroup.events").read_text()
    assert "frozen 1" in events
    count = _daemon(h)[1]
    with trio.move_on_after(0.3):  # the escaped daemon makes no progress while frozen
        await wait_until(lambda: _daemon(h)[1] != count, timeout=1)
    assert _daemon(h)[1] == count

    await h.sup.resume("d")
    await wait_until(lambda: _daemon(h)[1] > count)  # it runs again
    await h.sup.stop("d")
    await h.sup.terminate("d")  # a frozen tree is thawed to act on SIGTERM, then killed
    await _assert_nothing_left(h, "d", daemon)


async def test_memory_limit_and_out_of_memory_report(csup: Harness) -> None:
    h = csup
    hog = "data = b'x' * (200 * 2**20)\nimport time\ntime.sleep(60)\n"
    h.program("hog.py", hog)
    await h.sup.start(ProcessSpec("hog", "b", [PY, "hog.py"], memory=50 * 2**20,
                                  restart=RestartPolicy.NEVER))
    info = await h.sup.wait_state("hog", ENDED, 20)
    assert info.oom_kills == 1
    oom = [e for e in h.events if e.kind == EventKind.OUT_OF_MEMORY]
    assert [e.reason for e in oom] == ["killed by the kernel: out of memory (limit 50 MiB)"]
    ended = [e.reason for e in h.events if e.process == "hog" and e.new_state in ENDED][-1]
    assert ended.startswith("killed by the kernel: out of memory (limit 50 MiB)"), ended


async def test_pids_and_cpu_limits_are_written_and_enforced(csup: Harness) -> None:
    h = csup
    forker = """
import os, time
made = failed = 0
for _ in range(20):
    try:
        if os.fork() == 0:
            time.sleep(60)
            os._exit(0)
        made += 1
    except OSError:
        failed += 1
open("forks.txt", "w").write(f"{made} {failed}")
time.sleep(60)
"""
    h.program("forker.py", forker)
    await h.sup.start(ProcessSpec("f", "b", [PY, "forker.py"], max_pids=5, cpus="0.5"))
    text = await wait_until(lambda: (h.bundle_dir / "forks.txt").exists()
                            and (h.bundle_dir / "forks.txt").read_text())
    made, failed = map(int, text.split())
    assert made == 4 and failed == 16  # the program itself is the fifth
    dirs = h.sup._records["f"].cgroup.dirs
    assert (dirs["pids"] / "pids.max").read_text().strip() == "5"
    assert (dirs["cpu"] / "cpu.cfs_quota_us").read_text().strip() == "50000"
    assert len(h.sup._records["f"].cgroup.members()) == 5


async def test_a_limit_the_node_cannot_enforce_is_refused(tmp_path: Path,
                                                          bundle: Path) -> None:
    sup = Supervisor(tmp_path / "state", lambda name: bundle, lambda event: None,
                     layout=Layout("none"))
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        with pytest.raises(SpawnFailed, match="--memory cannot be enforced here: this node "
                                              "has no memory controller"):
            await sup.start(ProcessSpec("x", "b", ["/bin/true"], memory=2**30))
        [info] = sup.list()  # recorded as failed, like any start that cannot spawn
        assert info.state == S.FAILED and info.pid is None
        assert "no memory controller" in info.status
        nursery.cancel_scope.cancel()


async def test_an_agent_restart_finds_the_cgroup_again(tmp_path: Path,
                                                       bundle: Path) -> None:
    state = tmp_path / "state"
    h = Harness(Supervisor(state, lambda n: bundle, lambda e: None, layout=detect(state)),
                bundle, state)
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(h.sup.run)
            daemon = await _start_daemon(h)
            await h.sup.stop("d")
            nursery.cancel_scope.cancel()  # the agent goes away; the frozen tree stays
    except BaseException:
        remove_agent_cgroups(state)
        raise
    again = Supervisor(state, lambda n: bundle, lambda e: None, layout=detect(state))
    h2 = Harness(again, bundle, state)
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(again.run)
            info = again.get("d")
            assert info.state == S.STOPPED  # frozen shows no T state: its cgroup said so
            assert daemon in again._records["d"].cgroup.members()
            await again.terminate("d")
            await _assert_nothing_left(h2, "d", daemon)
            nursery.cancel_scope.cancel()
    finally:
        remove_agent_cgroups(state)


async def test_stats_come_from_the_cgroup_escaped_children_included(csup: Harness) -> None:
    h = csup
    busy = """
import os, time
if os.fork() == 0:
    os.setsid()  # an escaped child that burns CPU
    while True:
        pass
data = b"x" * (30 * 2**20)
open("ready", "w").write("1")
time.sleep(60)
"""
    h.program("busy.py", busy)
    info = await h.sup.start(ProcessSpec("busy", "b", [PY, "busy.py"]))
    await wait_until(lambda: (h.bundle_dir / "ready").exists())
    sampler = StatsSampler(h.state_dir)
    cgroups = h.sup.cgroups()
    assert set(cgroups) == {"busy"}
    await sampler.sample({"busy": info.pid}, cgroups=cgroups)  # primes the CPU delta
    stats = None

    async def busy_seen() -> bool:
        nonlocal stats
        _, per_process = await sampler.sample({"busy": info.pid}, cgroups=cgroups)
        stats = per_process["busy"]
        return stats.cpu_percent > 20

    with trio.fail_after(10):
        while not await busy_seen():
            await trio.sleep(0.1)
    assert stats is not None
    assert stats.num_children == 1 and stats.threads >= 2  # the escaped child counts
    assert stats.rss >= 30 * 2**20  # the memory controller's charge for the whole tree


async def test_without_cgroups_escaped_children_are_found_by_their_marker(
        tmp_path: Path, bundle: Path) -> None:
    """Layout "none": the daemon left the group, yet the end of the run kills it,
    found by the NOTIFY_SOCKET marker every process of the run inherits."""
    h = Harness(Supervisor(tmp_path / "state", lambda n: bundle, lambda e: None,
                           layout=Layout("none")), bundle, tmp_path / "state")
    async with trio.open_nursery() as nursery:
        await nursery.start(h.sup.run)
        try:
            daemon = await _start_daemon(h)
            marker = h.sup._records["d"].notify_address
            assert daemon in _marked(marker)
            await h.sup.terminate("d")
            await wait_until(lambda: not alive(daemon) and not _marked(marker))
        finally:
            for pid in _marked(h.sup._records["d"].notify_address):
                os.kill(pid, signal.SIGKILL)
            nursery.cancel_scope.cancel()


async def test_a_missing_or_unexecutable_program_is_refused_at_once(csup: Harness) -> None:
    """The join goes through /bin/sh (spawn.py): the agent still refuses in exec's words."""
    with pytest.raises(SpawnFailed, match="cannot start 'no-such-program': no-such-program: "
                                          "No such file or directory"):
        await csup.sup.start(ProcessSpec("gone", "b", ["no-such-program"]))
    (csup.bundle_dir / "plain.txt").write_text("not a program\n")
    with pytest.raises(SpawnFailed, match="cannot start './plain.txt': ./plain.txt: "
                                          "Permission denied"):
        await csup.sup.start(ProcessSpec("text", "b", ["./plain.txt"]))
    await csup.sup.start(ProcessSpec("sh", "b", ["sleep", "30"]))  # found on PATH
    info = csup.sup.get("sh")
    await wait_until(lambda: psutil.Process(info.pid).cmdline() == ["sleep", "30"])  # as given
    assert info.pid in csup.sup._records["sh"].cgroup.members()
