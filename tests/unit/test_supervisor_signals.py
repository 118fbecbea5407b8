"""No lost signals: a command right after start (or during it) always takes effect."""
# ruff: noqa: F811  (pytest fixtures imported from tests.agent_helpers, then used as arguments)
from __future__ import annotations

import signal

import trio

from lotc.agent.lifecycle import ProcessEvent
from lotc.agent.supervisor import ProcessSpec
from protocol.enums import ProcessState as S
from protocol.enums import RestartPolicy
from tests.agent_helpers import PY, Harness, alive, bundle, proc_state, sup, wait_until  # noqa: F401

CYCLES = 100


async def test_kill_right_after_start_never_lost(sup: Harness) -> None:
    s = sup.sup
    for i in range(CYCLES):
        name = f"k{i}"
        info = await s.start(ProcessSpec(name, "b", [PY, "-c", "import time; time.sleep(60)"],
                                         restart=RestartPolicy.ALWAYS))
        await s.kill(name)  # before the interpreter has even imported anything
        done = await s.wait_state(name, [S.EXITED], timeout=5)
        assert done.exit_signal == signal.SIGKILL, (i, done)
        assert info.pid is not None and not alive(info.pid)
        await s.remove(name)


async def test_terminate_and_stop_right_after_start_never_lost(sup: Harness) -> None:
    s = sup.sup
    for i in range(CYCLES):
        name = f"t{i}"
        info = await s.start(ProcessSpec(name, "b", ["/bin/sleep", "60"]))
        assert info.pid is not None
        if i % 2:
            await s.stop(name)
            await wait_until(lambda pid=info.pid: proc_state(pid) == "T", timeout=5)
            assert s.get(name).state == S.STOPPED
        done = await s.terminate(name, grace=5)
        assert done.exit_signal == signal.SIGTERM, (i, done)
        await s.remove(name)


def _on_starting(sup: Harness, nursery: trio.Nursery, command: object) -> None:
    """Hook the event stream: run `command(name)` as soon as `name` enters STARTING, i.e.
    while its spawn thread is still working and it has no pid yet."""
    def on_event(event: ProcessEvent) -> None:
        sup.events.append(event)
        if event.new_state == S.STARTING:
            nursery.start_soon(command, event.process)  # type: ignore[arg-type]

    sup.sup._on_event = on_event


async def test_stop_asked_for_while_starting_is_queued_and_delivered(sup: Harness) -> None:
    s = sup.sup
    async with trio.open_nursery() as nursery:
        _on_starting(sup, nursery, s.stop)
        info = await s.start(ProcessSpec("racy", "b", ["/bin/sleep", "60"]))
    assert info.pid is not None
    assert s.get("racy").state == S.STOPPED
    assert (S.STARTING, S.STOPPED) in sup.events_of("racy")
    await wait_until(lambda: proc_state(info.pid) == "T")


async def test_kill_asked_for_while_restarting_is_queued_and_delivered(sup: Harness) -> None:
    s = sup.sup
    await s.start(ProcessSpec("racy", "b", ["/bin/sleep", "60"]))
    async with trio.open_nursery() as nursery:
        _on_starting(sup, nursery, s.kill)
        await s.restart("racy")
    done = await s.wait_state("racy", [S.EXITED], timeout=5)
    assert done.exit_signal == signal.SIGKILL
