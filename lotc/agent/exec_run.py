"""`exec`: one command run once on this node, contained like a process (issue 20 item 1).

The command gets a cgroup of its own (`exec-N` beside the processes' cgroups) and
the same spawn as a process (spawn.py: a new session, --user done before exec),
so at its timeout the whole tree is killed, children that left its session too,
and nothing of it is left when the answer goes back. It runs in the user's home
directory (/ when there is none) with the agent's environment minus the agent's
own variables (runner.inherited_environment: no LOTC_TOKEN). stdout and stderr are
read as they come, each kept up to `max_output` bytes (the rest is read and
dropped, so a chatty command never blocks on a full pipe).
"""
from __future__ import annotations

import itertools
import logging
import os
import signal
from pathlib import Path

import trio

from lotc.agent.cgroup import Limits, ProcessCgroup
from lotc.agent.cgroup_layout import Layout
from lotc.agent.identity import identity_for
from lotc.agent.pipe import pump
from lotc.agent.runner import inherited_environment
from lotc.agent.spawn import ChildHandle, signal_group, spawn
from lotc.errors import LotcError
from protocol.enums import StreamKind
from protocol.messages import ExecCommand, ExecResult

__all__ = ["run_command"]

logger = logging.getLogger(__name__)

DRAIN_TIMEOUT = 0.5  # after the command ended, for its last output to arrive
KILL_WAIT = 5.0
_numbers = itertools.count(1)


class _Output:
    """A pipe's output kept up to `cap` bytes, the rest read and dropped (pipe.pump's sink)."""

    path = "the command's output"

    def __init__(self, cap: int, done: trio.Event) -> None:
        self.cap, self.data, self.truncated, self.done = cap, bytearray(), False, done

    def write(self, chunk: bytes) -> None:
        room = self.cap - len(self.data)
        self.data += chunk[:max(0, room)]
        self.truncated = self.truncated or len(chunk) > room

    def close(self) -> None:
        self.done.set()


def _start(msg: ExecCommand, cgroup: ProcessCgroup | None) -> ChildHandle:
    """Blocking: who it runs as, where, and the spawn; SpawnFailed in plain words."""
    identity = identity_for(0, msg.user, None)
    home = Path(identity.env.get("HOME") or os.path.expanduser("~"))
    cwd = home if home.is_dir() else Path("/")
    env = {**inherited_environment(os.environ), **identity.env}
    if cgroup is not None:
        cgroup.create(Limits())
    handle = spawn(msg.argv, cwd, env, identity, cgroup.procs_files() if cgroup else ())
    handle.cgroup = cgroup
    return handle


def _clean(cgroup: ProcessCgroup | None) -> None:
    if cgroup is None:
        return
    if not cgroup.kill_and_wait(KILL_WAIT):
        logger.warning("exec: members of %s outlived SIGKILL: %s", cgroup.dirs,
                       cgroup.members())
    cgroup.remove()


async def run_command(msg: ExecCommand, layout: Layout) -> ExecResult:
    """Run it, wait for its end or its timeout, and say what came of it."""
    started = trio.current_time()
    if not msg.argv or not msg.argv[0]:
        return ExecResult(status="refused", exit_code=-1, message="nothing to run")
    cgroup = ProcessCgroup.of(layout, f"exec-{os.getpid()}-{next(_numbers)}", Limits())
    try:
        handle = await trio.to_thread.run_sync(_start, msg, cgroup)
    except (LotcError, OSError) as exc:
        await trio.to_thread.run_sync(_clean, cgroup)
        return ExecResult(status="not started", exit_code=-1, message=str(exc),
                          duration_us=int((trio.current_time() - started) * 1e6))
    outputs = {stream: _Output(msg.max_output, trio.Event()) for stream in StreamKind}
    timed_out = False
    try:
        async with trio.open_nursery() as nursery:
            for stream, fd in handle.pipes.items():
                nursery.start_soon(pump, fd, outputs[stream])
            with trio.move_on_after(msg.timeout_ms / 1000) as deadline:
                code, sig = await handle.wait()
            if deadline.cancelled_caught:
                timed_out = True
                if cgroup is not None:
                    cgroup.kill()
                signal_group(handle.pid, signal.SIGKILL)
                code, sig = await handle.wait()
            with trio.move_on_after(DRAIN_TIMEOUT):
                for stream in handle.pipes:
                    await outputs[stream].done.wait()
            nursery.cancel_scope.cancel()
    finally:
        handle.close()
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(_clean, cgroup)
    status = "timed out" if timed_out else "killed" if sig else "exited"
    out, err = outputs[StreamKind.STDOUT], outputs[StreamKind.STDERR]
    return ExecResult(
        status=status, exit_code=-1 if code is None else code, signal=sig or 0,
        duration_us=int((trio.current_time() - started) * 1e6),
        stdout=bytes(out.data), stderr=bytes(err.data),
        truncated=out.truncated or err.truncated,
        message=f"killed after its timeout of {msg.timeout_ms / 1000:g} s" if timed_out else "")
