"""`agent AGENT`: one agent in detail (QUERY_AGENT -> AGENT_DETAIL).

The server sends label/text rows in display order (lotc/server/agent_detail.py),
among them what the agent's node can contain and limit (its cgroups).
"""
from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any, ClassVar

from admin_console.bounds import agent_selector
from admin_console.commands.base import Command, Context
from admin_console.commands.detail import render_rows
from admin_console.errors import UsageError
from admin_console.parsing import CommandParser
from admin_console.render import dumps
from lotc.names import is_valid_name
from protocol.messages import AgentDetail, AgentList, ListAgents, QueryAgent

__all__ = ["AgentCommand"]


class AgentCommand(Command):
    """Show one agent in detail: state, address, version, clock, and what its
    node's cgroups give it (how a process tree is killed and stopped, and
    which of --memory, --cpus, --max-pids it can enforce), then the
    capabilities it announced. What it announced is known while it is online.
    LABELS are those in effect, then where each came from (console, agent).
    AGENT may be a selector (see `help label`): a section per agent it matches.

    Examples:
      agent node-1
      agent node-1 --json
      agent role=web
    """

    name = "agent"
    usage = "agent AGENT"
    arguments: ClassVar[tuple[str, ...]] = ("agent",)

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("agent", type=agent_selector)

    def parse(self, argv: Sequence[str]) -> QueryAgent | ListAgents:
        args: argparse.Namespace = self.parser.parse(argv)
        if is_valid_name(args.agent):
            return QueryAgent(agent=args.agent)
        # QUERY_AGENT names one agent: the server says which a selector matches
        return ListAgents(pattern=check_selector(args.agent))

    async def execute(self, ctx: Context, parsed: QueryAgent | ListAgents
                      ) -> AgentDetail | tuple[AgentDetail, ...]:
        if isinstance(parsed, QueryAgent):
            return await _detail(ctx, parsed)
        frames = await ctx.require_client().request(parsed)
        return tuple([await _detail(ctx, QueryAgent(agent=a.name)) for f in frames
                      if isinstance(f.body, AgentList) for a in f.body.agents])

    def render(self, result: Any, json: bool) -> str:
        if isinstance(result, tuple):
            if json:
                return dumps({"agents": [_json(d) for d in result]})
            return "\n\n".join(self.render(d, False) for d in result) or "no agents"
        return render_rows(result.agent, result.fields, json, {"agent": result.agent})


async def _detail(ctx: Context, request: QueryAgent) -> AgentDetail:
    for frame in await ctx.require_client().request(request):
        if isinstance(frame.body, AgentDetail):
            return frame.body
    raise UsageError("the server does not know `agent AGENT` (it is older than this console)")


def _json(detail: AgentDetail) -> dict[str, Any]:
    return {"agent": detail.agent, "fields": {kv.key: kv.value for kv in detail.fields}}


def check_selector(text: str) -> str:
    if not text:
        raise UsageError("no agent given: name an agent or give a selector")
    return text
