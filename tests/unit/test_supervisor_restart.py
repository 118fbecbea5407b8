"""Restart policies, backoff that resets after a stable run, the crash-loop limit."""
# ruff: noqa: F811  (pytest fixtures imported from tests.agent_helpers, then used as arguments)
from __future__ import annotations

import os
import signal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lotc.agent.restart import RestartBudget, RunOutcome, backoff_delay, should_restart
from lotc.agent.supervisor import ProcessSpec
from protocol.enums import DesiredState
from protocol.enums import ProcessState as S
from protocol.enums import RestartPolicy as P
from tests.agent_helpers import Harness, bundle, sup, wait_until  # noqa: F401

# ---- pure rules -------------------------------------------------------------------------


@pytest.mark.parametrize("policy, outcome, restart", [
    (P.ALWAYS, RunOutcome(0, None), True),
    (P.ALWAYS, RunOutcome(None, 9, requested=True), False),
    (P.ON_FAILURE, RunOutcome(0, None), False),
    (P.ON_FAILURE, RunOutcome(1, None), True),
    (P.ON_FAILURE, RunOutcome(None, 11), True),
    (P.ON_FAILURE, RunOutcome(None, None), True),  # unknown status: assume the worst
    (P.ON_FAILURE, RunOutcome(None, 9, liveness_missed=True), True),
    (P.ON_FAILURE, RunOutcome(0, None, liveness_missed=True), True),
    (P.NEVER, RunOutcome(1, None), False),
])
def test_should_restart(policy: P, outcome: RunOutcome, restart: bool) -> None:
    assert should_restart(policy, outcome) is restart


def test_backoff_sequence() -> None:
    assert [backoff_delay(n, 0.5, 3.0) for n in range(6)] == [0, 0.5, 1, 2, 3, 3]


@given(st.integers(0, 10_000), st.floats(0, 100), st.floats(0, 1000))
def test_backoff_is_capped_and_monotonic(n: int, base: float, cap: float) -> None:
    assert 0 <= backoff_delay(n, base, cap) <= cap
    assert backoff_delay(n, base, cap) <= backoff_delay(n + 1, base, cap)


def test_budget_window_and_stable_reset() -> None:
    budget = RestartBudget(limit=2, window=10, stable_after=5)
    budget.record_restart(0)
    budget.record_restart(1)
    assert budget.exhausted(2) and budget.consecutive == 2
    assert not budget.exhausted(10.5)  # the first restart left the window
    budget.run_ended(4.9)
    assert budget.consecutive == 2
    budget.run_ended(5)
    assert budget.consecutive == 0
    assert not RestartBudget(limit=0, window=10, stable_after=1).exhausted(0)  # no limit


# ---- with real processes ----------------------------------------------------------------


async def test_crash_loop_backs_off_then_fails(sup: Harness) -> None:
    spec = ProcessSpec("crash", "b", ["/bin/sh", "-c", "exit 7"], restart=P.ON_FAILURE,
                       backoff_base=0.05, backoff_cap=0.1, restart_limit=3, restart_window=60)
    await sup.sup.start(spec)
    info = await sup.sup.wait_state("crash", [S.FAILED], timeout=10)
    assert info.restarts == 3 and info.exit_code == 7
    assert "giving up" in info.status
    backoffs = [e.reason for e in sup.events if e.new_state == S.BACKOFF]
    assert [r.split("restarting in ")[1] for r in backoffs] == ["0 s", "0.05 s", "0.1 s"]
    assert all(e.exit_code == 7 for e in sup.events if e.new_state in (S.BACKOFF, S.FAILED))
    assert sup.sup.uses_bundle("b") == []
    # An admin restart forgets the history and tries again.
    again = await sup.sup.restart("crash")
    assert again.state in (S.RUNNING, S.BACKOFF, S.EXITED)
    await sup.sup.wait_state("crash", [S.FAILED], timeout=10)


async def test_restart_of_a_failed_process_clears_its_status_and_count(sup: Harness) -> None:
    """Issue 14 item 9: `restart` starts afresh, as `ps` must show at once."""
    flag = sup.bundle_dir / "healthy"
    spec = ProcessSpec("flaky", "b", ["/bin/sh", "-c", "test -e healthy && exec sleep 60; exit 7"],
                       restart=P.ON_FAILURE, backoff_base=0.01, backoff_cap=0.02,
                       restart_limit=2, restart_window=60)
    await sup.sup.start(spec)
    failed = await sup.sup.wait_state("flaky", [S.FAILED], timeout=10)
    assert failed.restarts == 2 and "giving up" in failed.status
    assert failed.desired == DesiredState.EXITED, "desired follows reality"
    flag.touch()
    again = await sup.sup.restart("flaky")
    assert (again.state, again.restarts, again.status) == (S.RUNNING, 0, "")
    assert (again.exit_code, again.desired) == (None, DesiredState.RUNNING)


async def test_backoff_resets_after_a_stable_run(sup: Harness) -> None:
    spec = ProcessSpec("steady", "b", ["/bin/sh", "-c", "sleep 0.15; exit 1"],
                       backoff_base=5, stable_after=0.1, restart_limit=0)
    await sup.sup.start(spec)
    await wait_until(lambda: sup.sup.get("steady").restarts >= 3, timeout=10)
    backoffs = [e.reason for e in sup.events if e.new_state == S.BACKOFF]
    assert all(r.endswith("restarting in 0 s") for r in backoffs)


@pytest.mark.parametrize("policy, code, restarts", [
    (P.ON_FAILURE, 0, False), (P.ALWAYS, 0, True), (P.NEVER, 1, False), (P.ON_FAILURE, 1, True),
])
async def test_policies(sup: Harness, policy: P, code: int, restarts: bool) -> None:
    spec = ProcessSpec("p", "b", ["/bin/sh", "-c", f"exit {code}"], restart=policy,
                       backoff_base=60, restart_limit=0)
    await sup.sup.start(spec)
    info = await sup.sup.wait_state("p", [S.EXITED, S.BACKOFF], timeout=5)
    assert info.state == (S.BACKOFF if restarts else S.EXITED)
    assert info.exit_code == code


async def test_terminate_during_backoff_ends_it(sup: Harness) -> None:
    spec = ProcessSpec("slow", "b", ["/bin/sh", "-c", "exit 1"], backoff_base=30,
                       restart_limit=0)
    await sup.sup.start(spec)
    await wait_until(lambda: sup.sup.get("slow").restarts == 2)  # now waiting 30 s
    assert sup.sup.get("slow").state == S.BACKOFF
    info = await sup.sup.terminate("slow")
    assert info.state == S.EXITED
    assert sup.events[-1].reason == "terminated during backoff"


async def test_sigkill_means_stay_down_even_with_always(sup: Harness) -> None:
    await sup.sup.start(ProcessSpec("a", "b", ["/bin/sleep", "60"], restart=P.ALWAYS))
    await sup.sup.kill("a", "KILL")
    info = await sup.sup.wait_state("a", [S.EXITED], timeout=5)
    assert info.exit_signal == signal.SIGKILL and info.restarts == 0


async def test_an_external_kill_is_a_failure(sup: Harness) -> None:
    info = await sup.sup.start(ProcessSpec("x", "b", ["/bin/sleep", "60"], backoff_base=0.01))
    assert info.pid is not None
    os.kill(info.pid, signal.SIGKILL)  # the OOM killer, say
    await wait_until(lambda: sup.sup.get("x").restarts == 1 and sup.sup.get("x").pid)
    assert sup.sup.get("x").state == S.RUNNING
    assert [e.signal for e in sup.events if e.new_state == S.BACKOFF] == [signal.SIGKILL]
