"""`restart SELECTOR P --rolling`: a restart in batches, each gated on readiness (issue 17
item 3).

The agents SELECTOR names that have P are taken in order, `max_unavailable` at a
time. A batch is restarted (the ordinary restart: desired state first, then the
agent), then watched until every process of it is ready, for at most
`healthy_deadline`: only then does the next batch start, so at no moment are more
than `max_unavailable` instances not ready (tests/e2e/test_rolling.py polls that
all the time). Ready is what the agent reports (PROCESS_FACTS "ready": READY=1
from sd_notify, or the first passing --check); a process with no --check is ready
once it runs, as there is nothing else to wait for.
A batch that is not ready in time stops the roll: the report names the agents
done, the one that failed (and why), and the ones not touched.
"""
from __future__ import annotations

import trio

from lotc.errors import InvalidRequest, UnknownProcess
from lotc.names import validate_name
from lotc.server import queries
from lotc.server.command_context import CommandContext
from lotc.server.processes import control_process
from protocol.enums import ProcessState
from protocol.errors import ErrorCode
from protocol.messages import AgentResult, ProcRestart, RollingRestart

__all__ = ["rolling_restart"]

POLL_S = 0.2  # how often a batch's readiness is asked for
NOT_TOUCHED = ErrorCode.CONFLICT  # the code of an agent the stopped roll did not reach


async def rolling_restart(ctl: CommandContext, msg: RollingRestart) -> list[AgentResult]:
    validate_name("process", msg.name)
    if not 1 <= msg.healthy_deadline_ms:
        raise InvalidRequest("--healthy-deadline must be longer than 0")
    agents = [a for a in ctl.resolve_targets(msg.target)
              if ctl.store.find_process(a, msg.name) is not None]
    if not agents:
        raise UnknownProcess(f"no process {msg.name!r} on the agents {msg.target!r} names")
    size = max(1, msg.max_unavailable)
    results: dict[str, AgentResult] = {}
    batches = [agents[i:i + size] for i in range(0, len(agents), size)]
    for number, batch in enumerate(batches, 1):
        outcomes = await _roll_batch(ctl, batch, msg)
        results.update(outcomes)
        failed = [r for r in outcomes.values() if r.code != ErrorCode.OK]
        if failed:
            why = f"not touched: the roll stopped at batch {number} ({failed[0].agent} failed)"
            for agent in agents:
                results.setdefault(agent, AgentResult(agent=agent, code=NOT_TOUCHED,
                                                      message=why))
            break
    return [results[agent] for agent in agents]


async def _roll_batch(ctl: CommandContext, batch: list[str],
                      msg: RollingRestart) -> dict[str, AgentResult]:
    outcomes: dict[str, AgentResult] = {}

    async def one(agent: str) -> None:
        [restarted] = await control_process(ctl, ProcRestart(target=agent, name=msg.name))
        if restarted.code != ErrorCode.OK:
            outcomes[agent] = restarted
            return
        deadline = msg.healthy_deadline_ms / 1000
        with trio.move_on_after(deadline):
            while not await _ready(ctl, agent, msg.name):
                await trio.sleep(POLL_S)
            outcomes[agent] = AgentResult(agent=agent, code=ErrorCode.OK,
                                          message=f"restarted and ready ({restarted.message})")
            return
        outcomes[agent] = AgentResult(
            agent=agent, code=ErrorCode.TIMEOUT,
            message=f"restarted but not ready within {deadline:g} s: the roll stops here")

    async with trio.open_nursery() as nursery:
        for agent in batch:
            nursery.start_soon(one, agent)
    return outcomes


async def _ready(ctl: CommandContext, agent: str, name: str) -> bool:
    """Is `name` on `agent` ready now? (Asks the agent: queries.refresh.)"""
    await queries.refresh(ctl, {agent})
    running = any(s.name == name and s.state == ProcessState.RUNNING
                  for s in ctl.store.process_statuses(agent))
    facts = {kv.key: kv.value for kv in ctl.process_facts.get(agent, {}).get(name, ())}
    if not running:
        return False
    # with a check, ready means it passed (or READY=1); without, running is all there is
    return facts.get("ready") == "yes" or "health" not in facts
