"""Supervisor commands against real processes: whole-tree signals, errors, exit codes."""
# ruff: noqa: F811  (pytest fixtures imported from tests.agent_helpers, then used as arguments)
from __future__ import annotations

import signal
from pathlib import Path

import pytest
import trio

from lotc.agent.lifecycle import ProcessEvent
from lotc.agent.supervisor import ProcessSpec, Supervisor
from lotc.errors import (
    Conflict,
    InvalidRequest,
    InvalidState,
    SpawnFailed,
    UnknownBundle,
    UnknownProcess,
)
from protocol.enums import DesiredState, RestartPolicy
from protocol.enums import ProcessState as S
from tests.agent_helpers import (  # noqa: F401
    PY,
    Harness,
    alive,
    bundle,
    proc_state,
    sup,
    wait_until,
    write_program,
)

TREE = """\
#!/bin/sh
# a parent shell with a grandchild: both must be reached by group signals
sleep 60 &
echo $! > grandchild.pid
wait
"""


async def test_start_and_terminate_a_sleeper(sup: Harness) -> None:
    info = await sup.sup.start(ProcessSpec("sleeper", "b", ["/bin/sleep", "60"]))
    assert info.state == S.RUNNING and info.pid and alive(info.pid)
    assert info.started_at > 0 and info.desired == DesiredState.RUNNING
    done = await sup.sup.terminate("sleeper")
    assert done.state == S.EXITED and done.pid is None
    assert done.exit_signal == signal.SIGTERM and done.exit_code is None
    assert done.desired == DesiredState.EXITED
    assert sup.events_of("sleeper") == [(S.NONE, S.STARTING), (S.STARTING, S.RUNNING),
                                        (S.RUNNING, S.EXITED)]
    last = sup.events[-1]
    assert last.signal == signal.SIGTERM and "on request" in last.reason


async def _tree(sup: Harness) -> tuple[int, int]:
    write_program(sup.bundle_dir, "tree.sh", TREE)
    info = await sup.sup.start(ProcessSpec("tree", "b", ["./tree.sh"]))
    pidfile = sup.bundle_dir / "grandchild.pid"
    await wait_until(lambda: pidfile.exists() and pidfile.read_text().strip())
    assert info.pid is not None
    return info.pid, int(pidfile.read_text())


async def test_stop_and_resume_reach_the_grandchild(sup: Harness) -> None:
    parent, grandchild = await _tree(sup)
    await sup.sup.stop("tree")
    assert sup.sup.get("tree").state == S.STOPPED
    await wait_until(lambda: proc_state(parent) == "T" and proc_state(grandchild) == "T")
    await sup.sup.resume("tree")
    assert sup.sup.get("tree").state == S.RUNNING
    await wait_until(lambda: proc_state(parent) != "T" and proc_state(grandchild) != "T")


async def test_kill_reaches_the_grandchild(sup: Harness) -> None:
    parent, grandchild = await _tree(sup)
    await sup.sup.kill("tree")
    info = await sup.sup.wait_state("tree", [S.EXITED], timeout=5)
    assert info.exit_signal == signal.SIGKILL
    await wait_until(lambda: not alive(grandchild) and not alive(parent))


async def test_terminate_escalates_to_sigkill_after_the_grace(sup: Harness) -> None:
    argv = sup.program("stubborn.py", """
        import signal, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("ready", flush=True)
        time.sleep(60)
    """)
    await sup.sup.start(ProcessSpec("stubborn", "b", argv))
    await wait_until(lambda: (sup.state_dir / "logs/stubborn/stdout.log").read_text())
    start = trio.current_time()
    info = await sup.sup.terminate("stubborn", grace=0.3)
    assert 0.3 <= trio.current_time() - start < 3
    assert info.state == S.EXITED and info.exit_signal == signal.SIGKILL


async def test_terminate_a_stopped_process(sup: Harness) -> None:
    await sup.sup.start(ProcessSpec("s", "b", ["/bin/sleep", "60"]))
    await sup.sup.stop("s")
    info = await sup.sup.terminate("s", grace=5)
    assert info.exit_signal == signal.SIGTERM  # SIGCONT let it act on SIGTERM at once


async def test_kill_with_a_named_signal_is_delivered_and_the_policy_decides(
        sup: Harness) -> None:
    argv = sup.program("hup.py", """
        import signal, time
        signal.signal(signal.SIGHUP, lambda *a: print("reloaded", flush=True))
        print("ready", flush=True)
        while True:
            time.sleep(1)
    """)
    await sup.sup.start(ProcessSpec("hup", "b", argv, restart=RestartPolicy.ALWAYS))
    out = sup.state_dir / "logs/hup/stdout.log"
    await wait_until(lambda: "ready" in out.read_text())
    await sup.sup.kill("hup", "hup")
    await wait_until(lambda: "reloaded" in out.read_text())
    assert sup.sup.get("hup").state == S.RUNNING
    first = sup.sup.get("hup").pid
    await sup.sup.kill("hup", "SIGTERM")  # not SIGKILL: an end the policy restarts
    await wait_until(lambda: sup.sup.get("hup").pid not in (None, first))
    assert sup.sup.get("hup").restarts == 1


async def test_bad_requests_raise_clear_errors(sup: Harness) -> None:
    s = sup.sup
    with pytest.raises(UnknownProcess, match="'ghost'"):
        await s.stop("ghost")
    with pytest.raises(UnknownProcess):
        await s.tail_logs("ghost")
    await s.start(ProcessSpec("p", "b", ["/bin/sleep", "60"]))
    with pytest.raises(InvalidState, match="cannot resume process 'p': it is running"):
        await s.resume("p")
    with pytest.raises(Conflict, match="already exists"):
        await s.start(ProcessSpec("p", "b", ["/bin/sleep", "60"]))
    with pytest.raises(InvalidRequest, match="unknown signal"):
        await s.kill("p", "SIGWHAT")
    await s.stop("p")
    with pytest.raises(InvalidState, match="cannot stop"):
        await s.stop("p")
    await s.terminate("p")
    again = await s.terminate("p")  # already ended: stays down, no error (issue 14 item 9)
    assert again.state == S.EXITED and again.desired == DesiredState.EXITED
    with pytest.raises(InvalidState):
        await s.kill("p")
    assert s.get("p").state == S.EXITED  # nothing half-applied


async def test_missing_executable_is_spawn_failed_and_recorded(sup: Harness) -> None:
    with pytest.raises(SpawnFailed, match="no-such-program"):
        await sup.sup.start(ProcessSpec("m", "b", ["./no-such-program"]))
    info = sup.sup.get("m")
    assert info.state == S.FAILED and "no-such-program" in info.status
    (sup.bundle_dir / "not-exec").write_text("#!/bin/sh\n")
    with pytest.raises(SpawnFailed, match="Permission denied"):
        await sup.sup.start(ProcessSpec("m", "b", ["./not-exec"]))  # a failed name is reusable


async def test_unknown_bundle_creates_nothing(tmp_path: Path) -> None:
    def resolve(name: str) -> Path:
        raise UnknownBundle(f"no bundle named {name!r}")

    s = Supervisor(tmp_path / "state", resolve, lambda e: None)
    async with trio.open_nursery() as nursery:
        await nursery.start(s.run)
        with pytest.raises(UnknownBundle):
            await s.start(ProcessSpec("p", "nope", ["/bin/true"]))
        assert s.list() == []
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize("kwargs, message", [
    ({"name": "../x"}, "invalid process name"),
    ({"argv": []}, "command line is empty"),
    ({"cwd": "../up"}, "leaves the bundle"),
    ({"cwd": "/abs"}, "relative"),
    ({"grace": -1}, "grace"),
    ({"liveness_timeout": float("nan")}, "liveness_timeout"),
    ({"env": {"A=B": "x"}}, "environment"),
    ({"restart_limit": -2}, "restart_limit"),
])
def test_invalid_specs_are_rejected(kwargs: dict[str, object], message: str) -> None:
    values: dict[str, object] = {"name": "p", "bundle": "b", "argv": ["/bin/true"], **kwargs}
    with pytest.raises(InvalidRequest, match=message):
        ProcessSpec(**values)  # type: ignore[arg-type]


async def test_exit_code_environment_and_cwd(sup: Harness) -> None:
    (sup.bundle_dir / "sub").mkdir()
    argv = sup.program("env.py", """
        import os, sys
        for key in ("LOTC_PROCESS", "GREETING", "NOTIFY_SOCKET", "WATCHDOG_USEC"):
            print(key, os.environ.get(key))
        print("cwd", os.getcwd())
        sys.exit(3)
    """)
    argv = [PY, "../env.py"]
    spec = ProcessSpec("env", "b", argv, env={"GREETING": "hi"}, cwd="sub",
                       restart=RestartPolicy.NEVER, liveness_timeout=2.5)
    await sup.sup.start(spec)
    info = await sup.sup.wait_state("env", [S.EXITED], timeout=5)
    assert info.exit_code == 3 and info.exit_signal is None
    assert sup.events[-1].exit_code == 3
    out = dict(line.split(" ", 1) for line in await sup.sup.tail_logs("env", 10))
    assert out["LOTC_PROCESS"] == "env" and out["GREETING"] == "hi"
    assert out["NOTIFY_SOCKET"].startswith("@lotc/")
    assert out["WATCHDOG_USEC"] == "2500000"
    assert out["cwd"] == str(sup.bundle_dir / "sub")


async def test_restart_remove_and_uses_bundle(sup: Harness) -> None:
    s = sup.sup
    first = await s.start(ProcessSpec("r", "b", ["/bin/sleep", "60"]))
    await s.start(ProcessSpec("other", "c", ["/bin/sleep", "60"]))
    assert s.uses_bundle("b") == ["r"] and s.uses_bundle("zzz") == []
    second = await s.restart("r")
    assert second.state == S.RUNNING and second.pid != first.pid
    assert first.pid is not None and not alive(first.pid)
    await s.remove("r")
    assert second.pid is not None and not alive(second.pid)
    assert [i.name for i in s.list()] == ["other"]
    with pytest.raises(UnknownProcess):
        s.get("r")
    assert s.uses_bundle("b") == []


async def test_an_ended_process_can_be_started_again(sup: Harness) -> None:
    s = sup.sup
    await s.start(ProcessSpec("again", "b", ["/bin/true"], restart=RestartPolicy.NEVER))
    await s.wait_state("again", [S.EXITED], timeout=5)
    info = await s.start(ProcessSpec("again", "b", ["/bin/sleep", "60"]))
    assert info.state == S.RUNNING and info.spec.argv == ("/bin/sleep", "60")


async def test_a_failing_event_listener_does_not_break_the_supervisor(
        tmp_path: Path, bundle: Path) -> None:
    def explode(event: ProcessEvent) -> None:
        raise RuntimeError("listener bug")

    s = Supervisor(tmp_path / "state", lambda n: bundle, explode)
    async with trio.open_nursery() as nursery:
        await nursery.start(s.run)
        info = await s.start(ProcessSpec("p", "b", ["/bin/sleep", "60"]))
        await s.terminate("p")
        assert info.pid is not None and not alive(info.pid)
        nursery.cancel_scope.cancel()


async def test_commands_need_a_running_supervisor(tmp_path: Path, bundle: Path) -> None:
    s = Supervisor(tmp_path / "state", lambda n: bundle, lambda e: None)
    with pytest.raises(InvalidState, match="not running"):
        await s.start(ProcessSpec("p", "b", ["/bin/true"]))
    assert s.list() == []
