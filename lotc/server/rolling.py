"""Changes that roll through agents in batches, each gated on readiness (issue 17 items 3
and 4): `restart SELECTOR P --rolling` and `rollback SELECTOR BUNDLE`.

The agents are taken in order, `max_unavailable` at a time. A batch is changed
(`act`: for a restart, the ordinary restart; for a rollback, the switch of the
bundle's current version and a restart of the processes that run it), then watched
until every process the change touched is ready, for at most `healthy_deadline`:
only then does the next batch start, so at no moment are more than
`max_unavailable` instances not ready (tests/e2e/test_rolling.py polls that all the
time). Ready is what the agent reports (PROCESS_FACTS "ready": READY=1 from
sd_notify, or the first passing --check); a process with no --check is ready once it
runs, as there is nothing else to wait for. A batch that is not ready in time stops
the roll: the report names the agents done, the one that failed (and why), and the
ones not touched.
"""
from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

import trio

from lotc.errors import InvalidRequest, LotcError, UnknownProcess, error_for_code, wire_text
from lotc.names import validate_name
from lotc.server import queries
from lotc.server.command_context import CommandContext
from lotc.server.processes import control_process
from protocol.enums import ProcessState
from protocol.errors import ErrorCode
from protocol.messages import AgentResult, ProcRestart, RollingRestart

__all__ = ["Act", "restart_now", "roll", "rolling_restart"]

POLL_S = 0.2  # how often a batch's readiness is asked for
NOT_TOUCHED = ErrorCode.CONFLICT  # the code of an agent the stopped roll did not reach

# One agent's change: (what was done, the processes to wait for), or LotcError.
Act = Callable[[str], Awaitable[tuple[str, Sequence[str]]]]


async def roll(ctl: CommandContext, agents: Sequence[str], max_unavailable: int,
               healthy_deadline_ms: int, act: Act) -> list[AgentResult]:
    """Apply `act` to `agents` batch after batch (see the module doc)."""
    if healthy_deadline_ms < 1:
        raise InvalidRequest("--healthy-deadline must be longer than 0")
    size = max(1, max_unavailable)
    results: dict[str, AgentResult] = {}
    for number, start in enumerate(range(0, len(agents), size), 1):
        batch = agents[start:start + size]
        outcomes = await _roll_batch(ctl, batch, healthy_deadline_ms / 1000, act)
        results.update(outcomes)
        failed = [agent for agent in batch if outcomes[agent].code != ErrorCode.OK]
        if failed:
            why = f"not touched: the roll stopped at batch {number} ({failed[0]} failed)"
            for agent in agents:
                results.setdefault(agent, AgentResult(agent=agent, code=NOT_TOUCHED,
                                                      message=why))
            break
    return [results[agent] for agent in agents]


async def _roll_batch(ctl: CommandContext, batch: Sequence[str], deadline: float,
                      act: Act) -> dict[str, AgentResult]:
    outcomes: dict[str, AgentResult] = {}

    async def one(agent: str) -> None:
        try:
            done, processes = await act(agent)
        except LotcError as exc:
            outcomes[agent] = AgentResult(agent=agent, code=exc.code, message=wire_text(str(exc)))
            return
        with trio.move_on_after(deadline):
            while not await _all_ready(ctl, agent, processes):
                await trio.sleep(POLL_S)
            outcomes[agent] = AgentResult(agent=agent, code=ErrorCode.OK,
                                          message=f"{done} and ready")
            return
        outcomes[agent] = AgentResult(
            agent=agent, code=ErrorCode.TIMEOUT,
            message=f"{done} but not ready within {deadline:g} s: the roll stops here")

    async with trio.open_nursery() as nursery:
        for agent in batch:
            nursery.start_soon(one, agent)
    return outcomes


async def _all_ready(ctl: CommandContext, agent: str, names: Sequence[str]) -> bool:
    """Are all of `names` on `agent` ready now? One refresh asks the agent for them all."""
    await queries.refresh(ctl, {agent})
    running = {s.name for s in ctl.store.process_statuses(agent)
               if s.state == ProcessState.RUNNING}
    known = ctl.process_facts.get(agent, {})
    for name in names:
        facts = {kv.key: kv.value for kv in known.get(name, ())}
        # with a check, ready means it passed (or READY=1); without, running is all there is
        if name not in running or (facts.get("ready") != "yes" and "health" in facts):
            return False
    return True


async def restart_now(ctl: CommandContext, agent: str, name: str) -> str:
    """The ordinary restart of one process on one agent; LotcError when it failed."""
    [result] = await control_process(ctl, ProcRestart(target=agent, name=name))
    if result.code != ErrorCode.OK:
        raise error_for_code(result.code, result.message)
    return result.message


async def rolling_restart(ctl: CommandContext, msg: RollingRestart) -> list[AgentResult]:
    validate_name("process", msg.name)
    agents = [a for a in ctl.resolve_targets(msg.target)
              if ctl.store.find_process(a, msg.name) is not None]
    if not agents:
        raise UnknownProcess(f"no process {msg.name!r} on the agents {msg.target!r} names")

    async def restart(agent: str) -> tuple[str, Sequence[str]]:
        return f"restarted ({await restart_now(ctl, agent, msg.name)})", (msg.name,)

    return await roll(ctl, agents, msg.max_unavailable, msg.healthy_deadline_ms, restart)
