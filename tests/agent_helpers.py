"""Helpers for the supervisor tests: deadlines instead of sleeps, programs, a live Supervisor.

Import the fixtures into a test module with
`from tests.agent_helpers import sup, bundle  # noqa: F401`.
"""
from __future__ import annotations

import contextlib
import os
import signal
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trio

from lotc.agent.cgroup_layout import UNIFIED, own_cgroups, parent_name
from lotc.agent.lifecycle import ProcessEvent
from lotc.agent.logs import LogConfig
from lotc.agent.supervisor import Supervisor
from protocol.enums import ProcessState

PY = sys.executable


async def wait_until(predicate: Callable[[], Any], timeout: float = 5.0,
                     interval: float = 0.005) -> Any:
    """Poll `predicate` until it is true; fail the test after `timeout` seconds."""
    with trio.move_on_after(timeout):
        while True:
            value = predicate()
            if value:
                return value
            await trio.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s: {predicate}")


def proc_state(pid: int) -> str | None:
    """The one-letter state of a pid from /proc (R, S, T, Z...), None if gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return None


def suspended(pid: int) -> bool:
    """Stopped by SIGSTOP (state T), or frozen with its cgroup (cgroup.events says
    "frozen 1"; a frozen task shows no T state). False when gone."""
    if proc_state(pid) == "T":
        return True
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            directory = own_cgroups(proc_cgroup=f.read()).get(UNIFIED)
        return directory is not None and "frozen 1" in (directory / "cgroup.events").read_text()
    except OSError:
        return False


def alive(pid: int) -> bool:
    return proc_state(pid) not in (None, "Z", "X")


def write_program(directory: Path, name: str, source: str) -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(source))
    path.chmod(0o755)
    return path


@dataclass
class Harness:
    sup: Supervisor
    bundle_dir: Path
    state_dir: Path
    events: list[ProcessEvent] = field(default_factory=list)

    def program(self, name: str, source: str) -> list[str]:
        """Write a Python program into the bundle; the argv that runs it."""
        write_program(self.bundle_dir, name, source)
        return [PY, name]

    def events_of(self, name: str) -> list[tuple[ProcessState, ProcessState]]:
        return [(e.old_state, e.new_state) for e in self.events if e.process == name]


def remove_agent_cgroups(state_dir: Path) -> None:
    """Kill what is left in the cgroups of the agent over `state_dir` and remove them
    (an agent killed by a test cannot; the processes it left were killed by then)."""
    parents = [own / parent_name(state_dir) for own in own_cgroups().values()]
    parents = [parent for parent in parents if parent.is_dir()]
    for parent in parents:
        for child in parent.glob("proc-*"):
            if (child / "cgroup.kill").exists():
                (child / "cgroup.kill").write_text("1")
            for pid in (child / "cgroup.procs").read_text().split():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)
    deadline = time.monotonic() + 5
    for parent in parents:
        for directory in [*parent.glob("proc-*"), parent]:
            while True:
                try:
                    directory.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:  # EBUSY: its last members are still dying
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.01)


def kill_leftovers(sup: Supervisor) -> None:
    for info in sup.list():
        if info.pid:
            try:
                os.killpg(info.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def make_supervisor(state_dir: Path, bundle_dir: Path, events: list[ProcessEvent],
                    logs: LogConfig | None = None) -> Supervisor:
    def resolve(name: str) -> Path:
        return bundle_dir

    return Supervisor(state_dir, resolve, events.append, logs=logs)


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    path = tmp_path / "bundle"
    path.mkdir()
    return path


@pytest.fixture
async def sup(tmp_path: Path, bundle: Path) -> AsyncIterator[Harness]:
    """A running Supervisor; every process it started is gone after the test."""
    events: list[ProcessEvent] = []
    supervisor = make_supervisor(tmp_path / "state", bundle, events)
    async with trio.open_nursery() as nursery:
        await nursery.start(supervisor.run)
        try:
            yield Harness(supervisor, bundle, tmp_path / "state", events)
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(10):
                await supervisor.terminate_all(grace=1)
            kill_leftovers(supervisor)
            nursery.cancel_scope.cancel()
