"""Per-agent results (RESULTS replies), shared by every command that acts on agents.

Human form, one line per agent:
    node-1  ok      started pid 4242
    node-2  FAILED  unknown bundle 'x'
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from admin_console.commands.base import Command, Context
from admin_console.render import dumps, table
from lotc.errors import InternalError
from protocol.errors import ErrorCode
from protocol.messages import AgentResult, Message, Results

if TYPE_CHECKING:
    from admin_console.client import AdminClient

NO_AGENTS = "no agent matched"


async def request_results(client: AdminClient, body: Message,
                          timeout: float | None = None) -> tuple[AgentResult, ...]:
    """Send a request whose reply is RESULTS; collect the entries of every frame."""
    results: list[AgentResult] = []
    frames = await (client.request(body) if timeout is None else client.request(body, timeout))
    for frame in frames:
        results.extend(expect_results(frame.body))
    return tuple(results)


def expect_results(body: object) -> tuple[AgentResult, ...]:
    if not isinstance(body, Results):
        raise InternalError(f"the server answered {type(body).__name__} where RESULTS was due")
    return tuple(body.results)


def results_ok(results: Sequence[AgentResult]) -> bool:
    return all(result.code == ErrorCode.OK for result in results)


def render_results(results: Sequence[AgentResult], json: bool) -> str:
    if json:
        return dumps({"ok": results_ok(results), "results": list(results)})
    if not results:
        return NO_AGENTS
    rows = [(r.agent, "ok" if r.code == ErrorCode.OK else "FAILED", r.message) for r in results]
    return table(None, rows)


class ResultsCommand(Command):
    """A command answered with per-agent RESULTS: one line per agent, fails if any failed."""

    async def execute(self, ctx: Context, parsed: Any) -> tuple[AgentResult, ...]:
        return await request_results(ctx.require_client(), parsed)

    def render(self, result: tuple[AgentResult, ...], json: bool) -> str:
        return render_results(result, json)

    def succeeded(self, result: tuple[AgentResult, ...]) -> bool:
        return results_ok(result)
