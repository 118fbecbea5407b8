"""The table of console commands, and running one typed line through it.

Shared by the scripted console (`-c`, `-f`) and the REPL: both turn a line
into an Invocation with `parse_line` (no server needed, so typos are caught
before anything runs) and run it with `run_invocation`.
"""
from __future__ import annotations

import dataclasses
import difflib
import enum
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from admin_console.bounds import check_fits
from admin_console.commands.base import Command, Context, QuitRequest
from admin_console.errors import UsageError
from admin_console.parsing import words

logger = logging.getLogger(__name__)


class Outcome(enum.Enum):
    OK = "ok"
    FAILED = "failed"  # it ran, but the server or an agent said no
    QUIT = "quit"  # the user asked to leave


JSON_FLAG = "--json"


@dataclass(frozen=True)
class Invocation:
    command: Command
    parsed: Any
    line: str
    json: bool = False  # this command was given --json (`-c "ps --json"`, or in the REPL)


class Registry:
    def __init__(self, commands: Iterable[Command], aliases: dict[str, str] | None = None) -> None:
        self._commands = {command.name: command for command in commands}
        self._aliases = dict(aliases or {})

    def __iter__(self) -> Iterator[Command]:
        return iter(self._commands.values())

    def names(self) -> list[str]:
        return sorted(self._commands)

    def get(self, name: str) -> Command:
        """The command called `name`; UsageError with suggestions otherwise."""
        command = self._commands.get(self._aliases.get(name, name))
        if command is not None:
            return command
        close = difflib.get_close_matches(name, list(self._commands) + list(self._aliases), n=3)
        hint = f" (did you mean {' or '.join(close)}?)" if close else ""
        raise UsageError(f"unknown command {name!r}{hint}; type 'help' for the list")


def parse_line(registry: Registry, line: str) -> Invocation | None:
    """Parse one command line; None for a blank line."""
    argv, json = take_json_flag(words(line))
    if not argv:
        return None
    command = registry.get(argv[0])
    try:
        parsed = command.parse(argv[1:])
    except UsageError as exc:
        if exc.usage:
            raise
        raise UsageError(str(exc), command.usage) from None  # checks made after argparse
    try:
        check_fits(parsed)
    except UsageError as exc:
        raise UsageError(str(exc), command.usage) from None
    return Invocation(command, parsed, line.strip(), json)


def take_json_flag(argv: list[str]) -> tuple[list[str], bool]:
    """Remove `--json` from a command's own words (not from a program's, after `--`)."""
    end = argv.index("--") if "--" in argv else len(argv)
    own = [word for word in argv[:end] if word != JSON_FLAG]
    return own + argv[end:], len(own) < end


async def run_invocation(ctx: Context, invocation: Invocation) -> Outcome:
    """Execute and print one parsed command. Errors propagate to the caller."""
    command = invocation.command
    if invocation.json and not ctx.json:
        ctx = dataclasses.replace(ctx, json=True)  # streams look at it while they run
    result = await command.execute(ctx, invocation.parsed)
    if isinstance(result, QuitRequest):
        return Outcome.QUIT
    text = command.render(result, ctx.json)
    if text:
        ctx.emit(text)
    return Outcome.OK if command.succeeded(result) else Outcome.FAILED
