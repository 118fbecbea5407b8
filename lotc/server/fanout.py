"""One command to many agents at once, each answering for itself (RESULTS)."""
from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable

import trio

from lotc.errors import LotcError, wire_text
from protocol.errors import ErrorCode
from protocol.messages import AgentResult

AgentCall = Callable[[str], Awaitable[str]]


async def fan_out(agents: Iterable[str], call: AgentCall) -> list[AgentResult]:
    """Run `call(agent)` for every agent at once; turn each outcome into a result, in the
    order of `agents`. One agent's error is its result, never the others'."""
    results: dict[str, AgentResult] = {}

    async def one(agent: str) -> None:
        try:
            message = await call(agent)
            results[agent] = AgentResult(agent=agent, code=ErrorCode.OK, message=message)
        except LotcError as exc:
            results[agent] = AgentResult(agent=agent, code=exc.code, message=wire_text(str(exc)))

    names = list(agents)
    async with trio.open_nursery() as nursery:
        for name in names:
            nursery.start_soon(one, name)
    return [results[name] for name in names]
