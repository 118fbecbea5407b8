"""`wait AGENT`: until the agents are online, for scripts that have just started them.

Polls the server's agent list (the same request as `agents`), so it needs no
new message and works with any server of this protocol.
"""
from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass

import trio

from admin_console.bounds import agent_selector
from admin_console.commands.base import Command, Context
from admin_console.commands.listing import AgentsCommand, Listing, now_us
from admin_console.errors import UsageError
from admin_console.parsing import CommandParser, parse_duration
from admin_console.render import dumps
from lotc.errors import RequestTimeout, UnknownAgent
from lotc.selectors import parse_selector
from protocol.messages import AgentEntry, AgentList, ListAgents

DEFAULT_TIMEOUT_S = 30.0
MAX_TIMEOUT_S = 24 * 3600.0
POLL_S = 0.2


@dataclass(frozen=True)
class WaitFor:
    pattern: str
    timeout_s: float


class WaitCommand(Command):
    """Wait until AGENT is online: every agent it names, or at least one for a selector.

    For scripts that have just started an agent: the commands after it find
    it connected. AGENT is a selector (see `help label`): with label terms,
    it waits until at least one agent has the labels and every one that has
    them is online. Fails after --timeout (default 30s), naming who is missing.

    Examples:
      wait node-1
      wait web-* --timeout 2m
      wait role=web
    """

    name = "wait"
    usage = "wait AGENT [--timeout DURATION]"
    arguments = ("agent",)

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("agent", type=agent_selector)
        parser.add_argument("--timeout", type=parse_duration, default=DEFAULT_TIMEOUT_S)

    def parse(self, argv: Sequence[str]) -> WaitFor:
        args: argparse.Namespace = self.parser.parse(argv)
        if not 0 < args.timeout <= MAX_TIMEOUT_S:
            raise UsageError(f"--timeout must be more than 0 and at most {MAX_TIMEOUT_S:g} s")
        return WaitFor(args.agent, args.timeout)

    async def execute(self, ctx: Context, parsed: WaitFor) -> Listing:
        client = ctx.require_client()
        seen: list[AgentEntry] = []
        labelled = parse_selector(parsed.pattern).uses_labels
        with trio.move_on_after(parsed.timeout_s):
            while True:
                try:
                    frames = await client.request(ListAgents(pattern=parsed.pattern))
                except UnknownAgent:
                    if not labelled:
                        raise  # a name no one enrolled: waiting would not help
                    frames = []  # no agent has (announced) the labels yet
                seen = [a for f in frames if isinstance(f.body, AgentList) for a in f.body.agents]
                if seen and all(agent.online for agent in seen):
                    return Listing(tuple(seen), now_us())
                await trio.sleep(POLL_S)
        offline = [agent.name for agent in seen if not agent.online]
        missing = ", ".join(offline) if offline else f"{parsed.pattern} (never connected)"
        raise RequestTimeout(f"not online after {parsed.timeout_s:g} s: {missing}")

    def render(self, result: Listing, json: bool) -> str:
        if json:
            return dumps({"agents": list(result.entries)})
        return AgentsCommand().table(result)
