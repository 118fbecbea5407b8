from __future__ import annotations

import signal

import pytest

from lotc.agent.supervisor import ProcessSpec
from protocol.enums import DesiredState, ProcessState as S, RestartPolicy
from tests.agent_helpers import Harness, alive, bundle, proc_state, sup, wait_until  # noqa: F401


async def test_start_and_terminate_a_sleeper(sup: Harness) -> None:
    info = await sup.sup.start(ProcessSpec("sleeper", "b", ["/bin/sleep", "60"]))
    assert info.state == S.RUNNING and info.pid and alive(info.pid)
    done = await sup.sup.terminate("sleeper")
    assert done.state == S.EXITED
    assert done.exit_signal == signal.SIGTERM
    assert done.desired == DesiredState.EXITED
    assert sup.events_of("sleeper") == [(S.NONE, S.STARTING), (S.STARTING, S.RUNNING),
                                        (S.RUNNING, S.EXITED)]
