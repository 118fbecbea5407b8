"""`help` and `quit`: the commands that need no server."""
from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass

from admin_console.commands.base import Command, Context, QuitRequest
from admin_console.parsing import CommandParser
from admin_console.render import dumps, table

AGENT_NOTE = ("AGENT is a selector: an agent's name, a glob such as web-*, all, a comma list "
              "(web-1,db-*),\nor label terms that must all hold (role=web,zone!=b); "
              "see 'help label'.")


@dataclass(frozen=True)
class HelpPage:
    commands: tuple[Command, ...]
    detailed: bool  # one command's whole help, or the list of all


class HelpCommand(Command):
    """Show the commands, or one command's usage, description and examples.

    Examples:
      help
      help start
    """

    name = "help"
    usage = "help [COMMAND]"
    arguments = ("command",)
    needs_server = False

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("topic", nargs="?")

    def parse(self, argv: Sequence[str]) -> str | None:
        args: argparse.Namespace = self.parser.parse(argv)
        return args.topic

    async def execute(self, ctx: Context, parsed: str | None) -> HelpPage:
        if parsed is None:
            return HelpPage(tuple(ctx.registry), detailed=False)
        return HelpPage((ctx.registry.get(parsed),), detailed=True)

    def render(self, result: HelpPage, json: bool) -> str:
        if json:
            return dumps({"commands": [
                {"name": c.name, "usage": c.usage, "summary": c.summary, "help": c.help}
                for c in result.commands]})
        if result.detailed:
            command = result.commands[0]
            return f"usage: {command.usage}\n\n{command.help}"
        rows = [(c.usage if len(c.usage) < 40 else f"{c.name} ...", c.summary)
                for c in result.commands]
        return (f"{table(None, rows)}\n\n{AGENT_NOTE}\n"
                "Type 'help COMMAND' for its options and examples; add --json to any "
                "command for one JSON document on one line.")


class QuitCommand(Command):
    """Leave the console (in a script: stop here, successfully).

    Examples:
      quit
    """

    name = "quit"
    usage = "quit"
    needs_server = False

    def parse(self, argv: Sequence[str]) -> None:
        self.parser.parse(argv)

    async def execute(self, ctx: Context, parsed: None) -> QuitRequest:
        return QuitRequest()

    def render(self, result: object, json: bool) -> str:
        return ""
