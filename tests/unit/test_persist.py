"""The supervisor's state on disk, and agent restarts with live processes re-adopted."""
# ruff: noqa: F811  (pytest fixtures imported from tests.agent_helpers, then used as arguments)
from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
from pathlib import Path

import psutil
import pytest
import trio

from lotc.agent.lifecycle import ProcessEvent
from lotc.agent.notify import new_address
from lotc.agent.persist import StateFiles
from lotc.agent.process import ProcessRecord, budget_for
from lotc.agent.supervisor import ProcessSpec, Supervisor
from lotc.errors import Conflict
from protocol.enums import DesiredState, RestartPolicy
from protocol.enums import ProcessState as S
from tests.agent_helpers import (  # noqa
    PY,
    alive,
    bundle,
    kill_leftovers,
    make_supervisor,
    proc_state,
    wait_until,
)
from tests.unit.test_liveness import BEATER


def test_state_files_round_trip_sync_and_lock(tmp_path: Path) -> None:
    files = StateFiles(tmp_path)
    files.acquire()
    try:
        files.save("a", {"x": 1})
        files.save("a", {"x": 2})
        files.save("b", {"x": 3})
        files.delete("b")
        files.sync()
        files.sync()  # nothing left to flush
        (files.root / "broken.json").write_text("{not json")
        (files.root / "old.json").write_text('{"version": 99}')
        (files.root / ".a.json.tmp").write_text("half")  # a crash mid-write
        assert files.load_all() == [{"version": 1, "x": 2}]
        assert not (files.root / ".a.json.tmp").exists()
        with pytest.raises(Conflict, match="another supervisor"):
            StateFiles(tmp_path).acquire()
    finally:
        files.release()
    StateFiles(tmp_path).acquire()  # free again


def test_spec_json_round_trip() -> None:
    spec = ProcessSpec("p", "b", ["a", "b c"], env={"K": "V"}, cwd="sub",
                       restart=RestartPolicy.ALWAYS, liveness_timeout=1.5, revision=7)
    assert ProcessSpec.from_json(json.loads(json.dumps(spec.to_json()))) == spec


async def _crash_after(state: Path, bundle: Path, events: list[ProcessEvent],
                       setup: object) -> None:
    """Run a supervisor, do `setup(sup)`, then cancel it like an agent crash."""
    sup = make_supervisor(state, bundle, events)
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        await setup(sup)  # type: ignore[operator]
        nursery.cancel_scope.cancel()


async def test_agent_restart_readopts_live_processes(tmp_path: Path, bundle: Path) -> None:
    (bundle / "beater.py").write_text(BEATER)
    state = tmp_path / "state"
    pids: dict[str, int] = {}

    async def setup(sup: Supervisor) -> None:
        beater = await sup.start(ProcessSpec("beater", "b", [PY, "beater.py"],
                                             liveness_timeout=0.3))
        nap = await sup.start(ProcessSpec("nap", "b", ["/bin/sleep", "60"]))
        dies = await sup.start(ProcessSpec("dies", "b", ["/bin/sleep", "60"]))
        await sup.start(ProcessSpec("done", "b", ["/bin/true"], restart=RestartPolicy.NEVER))
        await sup.wait_state("done", [S.EXITED], timeout=5)
        await sup.stop("nap")
        await wait_until(lambda: sup.get("beater").ready)
        pids.update(beater=beater.pid, nap=nap.pid, dies=dies.pid)  # type: ignore[arg-type]

    await _crash_after(state, bundle, [], setup)
    try:
        assert alive(pids["beater"]) and proc_state(pids["nap"]) == "T"  # the crash kept them
        os.kill(pids["dies"], signal.SIGKILL)  # ... and one ends while no agent watches
        await wait_until(lambda: not alive(pids["dies"]))
        events: list[ProcessEvent] = []
        sup = make_supervisor(state, bundle, events)
        async with trio.open_nursery() as nursery:
            await nursery.start(sup.run)
            try:
                await _check_readopted(sup, events, pids)
            finally:
                with trio.CancelScope(shield=True):
                    await sup.terminate_all(grace=1)
                kill_leftovers(sup)
                nursery.cancel_scope.cancel()
    finally:
        for pid in pids.values():
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


async def _check_readopted(sup: Supervisor, events: list[ProcessEvent],
                           pids: dict[str, int]) -> None:
    info = {i.name: i for i in sup.list()}
    assert info["beater"].state == S.RUNNING and info["beater"].pid == pids["beater"]
    assert info["nap"].state == S.STOPPED and info["nap"].pid == pids["nap"]
    assert info["nap"].desired == DesiredState.STOPPED
    assert info["dies"].state == S.RUNNING and info["dies"].pid != pids["dies"]
    assert info["done"].state == S.EXITED
    assert [(e.process, e.old_state, e.new_state) for e in events
            if e.old_state == S.NONE] == [
        ("beater", S.NONE, S.RUNNING), ("dies", S.NONE, S.STARTING), ("nap", S.NONE, S.STOPPED)]
    # The re-adopted process's beats still reach the new agent: no liveness miss.
    await trio.sleep(0.9)  # three liveness timeouts
    assert sup.get("beater").pid == pids["beater"] and sup.get("beater").restarts == 0
    # Commands work on adopted processes, and their end is noticed.
    await sup.resume("nap")
    await wait_until(lambda: proc_state(pids["nap"]) not in ("T", None))
    done = await sup.terminate("beater")
    assert done.state == S.EXITED and not alive(pids["beater"])


@pytest.mark.parametrize(("change", "adopted"), [
    ({"create_time": -1000, "start_ticks": -100_000}, False),  # pid reused by another
    ({"create_time": -1000}, True),  # the wall clock was stepped back: same process
    ({"start_ticks": None}, True),  # a record of an earlier agent: wall-clock start only
])
async def test_a_reused_pid_is_not_adopted(tmp_path: Path, bundle: Path,
                                           change: dict[str, int | None],
                                           adopted: bool) -> None:
    """Identity is the start time on the boot clock (/proc/PID/stat starttime): a step
    of the wall clock, which moves psutil's create_time, must not double the process."""
    state = tmp_path / "state"

    async def setup(sup: Supervisor) -> None:
        await sup.start(ProcessSpec("p", "b", ["/bin/sleep", "60"]))

    await _crash_after(state, bundle, [], setup)
    record_path = state / "processes/p.json"
    record = json.loads(record_path.read_text())
    old_pid = record["pid"]
    assert isinstance(record["start_ticks"], int)
    for key, delta in change.items():
        record[key] = None if delta is None else record[key] + delta
    record_path.write_text(json.dumps(record))
    sup = make_supervisor(state, bundle, [])
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(sup.run)
            assert (sup.get("p").pid == old_pid) == adopted and sup.get("p").state == S.RUNNING
            # not adopted: the "stranger" (really the old process) runs beside a new one
            assert len(_carrying(record["notify_address"])) == (1 if adopted else 2)
            with trio.CancelScope(shield=True):
                await sup.terminate_all(grace=1)
            nursery.cancel_scope.cancel()
    finally:
        with contextlib.suppress(ProcessLookupError):  # gone if it was adopted
            os.killpg(old_pid, signal.SIGKILL)
        kill_leftovers(sup)


async def test_a_start_whose_pid_was_never_recorded_is_adopted_not_doubled(
        tmp_path: Path, bundle: Path) -> None:
    """The agent died between the spawn and saving the pid: the orphan is found by its
    NOTIFY_SOCKET name and taken back, not started a second time."""
    state = tmp_path / "state"

    async def setup(sup: Supervisor) -> None:
        await sup.start(ProcessSpec("p", "b", ["/bin/sleep", "60"]))

    await _crash_after(state, bundle, [], setup)
    record_path = state / "processes/p.json"
    record = json.loads(record_path.read_text())
    orphan = record["pid"]
    record.update(pid=None, create_time=0.0, state="STARTING")
    record_path.write_text(json.dumps(record))
    sup = make_supervisor(state, bundle, [])
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(sup.run)
            assert sup.get("p").pid == orphan and sup.get("p").state == S.RUNNING
            with trio.CancelScope(shield=True):
                await sup.terminate_all(grace=1)
            assert not alive(orphan)
            nursery.cancel_scope.cancel()
    finally:
        try:
            os.killpg(orphan, signal.SIGKILL)
        except ProcessLookupError:
            pass
        kill_leftovers(sup)


NS_LAST_PID = Path("/proc/sys/kernel/ns_last_pid")


def _spawn_with_pid(pid: int, argv: list[str], env: dict[str, str],
                    tries: int = 50) -> subprocess.Popen[bytes]:
    """A real process given `pid` (the kernel's next pid is steered through ns_last_pid;
    another fork on the machine can take it first: then try again)."""
    for _ in range(tries):
        NS_LAST_PID.write_text(str(pid - 1))
        child = subprocess.Popen(argv, env=env, start_new_session=True)
        if child.pid == pid:
            return child
        child.kill()
        child.wait()
    pytest.skip(f"pid {pid} was taken by other processes {tries} times")


def _orphan_on_a_reused_pid(notify_address: str) -> subprocess.Popen[bytes]:
    """A process carrying `notify_address`, on the pid of a process psutil saw earlier."""
    earlier = subprocess.Popen(["/bin/sleep", "60"])
    list(psutil.process_iter(["create_time"]))  # someone looked at the processes then
    with contextlib.suppress(subprocess.TimeoutExpired):  # their start times must differ
        earlier.wait(timeout=0.2)  # visibly (it stays alive: the wait runs out)
    earlier.kill()
    earlier.wait()
    env = {**os.environ, "NOTIFY_SOCKET": notify_address}
    return _spawn_with_pid(earlier.pid, ["/bin/sleep", "60"], env)


def _carrying(notify_address: str) -> list[int]:
    """Pids of the live processes whose environment holds this NOTIFY_SOCKET."""
    found = []
    for pid in psutil.pids():
        try:
            if psutil.Process(pid).environ().get("NOTIFY_SOCKET") == notify_address:
                found.append(pid)
        except psutil.Error:
            continue
    return found


@pytest.mark.skipif(not os.access(NS_LAST_PID, os.W_OK), reason="needs ns_last_pid (root)")
async def test_an_orphan_on_a_reused_pid_is_adopted_not_doubled(
        tmp_path: Path, bundle: Path) -> None:
    """The race found under load (pid_max is 32768 here, so pids wrap within minutes): a
    lookup of processes earlier in the agent's life (the stats sampler, an earlier
    restore) had cached the process that held the orphan's pid before it; the orphan was
    matched by its NOTIFY_SOCKET but given that stranger's start time, so adopt() refused
    it and a second copy was started."""
    state = tmp_path / "state"
    files = StateFiles(state)
    files.root.mkdir(parents=True)
    rec = ProcessRecord(spec=ProcessSpec("p", "b", ["/bin/sleep", "60"]),
                        notify_address=new_address(), budget=budget_for(
                            ProcessSpec("p", "b", ["/bin/sleep", "60"])))
    rec.state = S.STARTING
    files.save("p", rec.to_json())  # as written by the runner just before its spawn
    orphan = _orphan_on_a_reused_pid(rec.notify_address)
    sup = make_supervisor(state, bundle, [])
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(sup.run)
            assert sup.get("p").pid == orphan.pid and sup.get("p").state == S.RUNNING
            assert len(_carrying(rec.notify_address)) == 1
            with trio.CancelScope(shield=True):
                await sup.terminate_all(grace=1)
            nursery.cancel_scope.cancel()
        assert not alive(orphan.pid) and sup.get("p").exit_signal == signal.SIGTERM
    finally:
        orphan.kill()
        orphan.wait()
        kill_leftovers(sup)


async def test_an_orphan_still_in_its_exec_is_adopted_not_doubled(
        tmp_path: Path, bundle: Path) -> None:
    """The race left after the cache fix: right after Popen returns the child may still be
    inside execve(), its environment not yet copied in (/proc/PID/environ reads empty), so
    the orphan was passed over and a second copy started at pid + 1. Here the orphan's
    exec is stretched: a session leader with no environment that execs into the
    marked program a little later, on the same pid."""
    state = tmp_path / "state"
    files = StateFiles(state)
    files.root.mkdir(parents=True)
    spec = ProcessSpec("p", "b", ["/bin/sleep", "60"])
    rec = ProcessRecord(spec=spec, notify_address=new_address(), budget=budget_for(spec))
    rec.state = S.STARTING
    files.save("p", rec.to_json())  # as written by the runner just before its spawn
    orphan = _orphan_in_a_long_exec(rec.notify_address)
    sup = make_supervisor(state, bundle, [])
    try:
        assert orphan.stdin is not None
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_let_exec_finish, orphan.stdin)
            await nursery.start(sup.run)
            assert sup.get("p").pid == orphan.pid and sup.get("p").state == S.RUNNING
            assert _carrying(rec.notify_address) == [orphan.pid]
            with trio.CancelScope(shield=True):
                await sup.terminate_all(grace=1)
            nursery.cancel_scope.cancel()
    finally:
        orphan.kill()
        orphan.wait()
        kill_leftovers(sup)


def _orphan_in_a_long_exec(notify_address: str) -> subprocess.Popen[bytes]:
    """A session leader with an empty environment (as in execve()) until a line on its
    stdin lets it exec, on the same pid, into a program carrying `notify_address`."""
    return subprocess.Popen(
        ["/bin/sh", "-c", 'read _; NOTIFY_SOCKET=$0 exec /bin/sleep 60',  # one exec
         notify_address], env={}, stdin=subprocess.PIPE, start_new_session=True)


async def _let_exec_finish(stdin: object) -> None:
    await trio.sleep(0.3)  # find_orphan is looking by then: the orphan has no environment
    stdin.write(b"\n")  # type: ignore[attr-defined]
    stdin.flush()  # type: ignore[attr-defined]
