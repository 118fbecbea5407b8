"""`agent AGENT`: one agent in detail (QUERY_AGENT -> AGENT_DETAIL).

The server sends label/text rows in display order (lotc/server/agent_detail.py),
among them what the agent's node can contain and limit (its cgroups).
"""
from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any, ClassVar

from admin_console.commands.base import Command, Context
from admin_console.commands.detail import render_rows
from admin_console.errors import UsageError
from admin_console.parsing import CommandParser, check_name
from protocol.messages import AgentDetail, QueryAgent

__all__ = ["AgentCommand"]


class AgentCommand(Command):
    """Show one agent in detail: state, address, version, clock, and what its
    node's cgroups give it (how a process tree is killed and stopped, and
    which of --memory, --cpus, --max-pids it can enforce), then the
    capabilities it announced. What it announced is known while it is online.

    Examples:
      agent node-1
      agent node-1 --json
    """

    name = "agent"
    usage = "agent AGENT"
    arguments: ClassVar[tuple[str, ...]] = ("agent",)

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("agent")

    def parse(self, argv: Sequence[str]) -> QueryAgent:
        args: argparse.Namespace = self.parser.parse(argv)
        return QueryAgent(agent=check_name("agent", args.agent))

    async def execute(self, ctx: Context, parsed: QueryAgent) -> AgentDetail:
        for frame in await ctx.require_client().request(parsed):
            if isinstance(frame.body, AgentDetail):
                return frame.body
        raise UsageError("the server does not know `agent AGENT` (it is older than this "
                         "console)")

    def render(self, result: Any, json: bool) -> str:
        return render_rows(result.agent, result.fields, json, {"agent": result.agent})
