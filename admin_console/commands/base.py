"""What a console command is: one small definition with parse, execute and render.

A command's class docstring is its `help`: first line the summary, then a
description and examples. `usage` is the line shown with every usage error.
`parse` is pure (words in, a parsed value out, UsageError on bad input), so
the REPL can validate and complete without a server; `execute` talks to the
server through the Context; `render` turns the result into text, human or
JSON. Commands whose output arrives over time (`logs -f`, `events -f`) print
through `Context.emit` while they run and render only a closing summary.
"""
from __future__ import annotations

import inspect
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, TextIO

import trio

from admin_console.errors import NotConnected
from admin_console.parsing import CommandParser

if TYPE_CHECKING:
    from admin_console.client import AdminClient
    from admin_console.registry import Registry


async def wait_for_sigint() -> None:
    """Return at the next Ctrl-C (SIGINT), which does not raise KeyboardInterrupt meanwhile."""
    with trio.open_signal_receiver(signal.SIGINT) as received:
        async for _ in received:
            return


@dataclass
class Context:
    """Everything a command may use while it runs; the REPL builds its own."""

    client: AdminClient | None
    registry: Registry
    json: bool = False
    out: TextIO = field(default_factory=lambda: sys.stdout)
    err: TextIO = field(default_factory=lambda: sys.stderr)
    progress: bool = False  # draw progress bars on `err`
    # returns when the user asks a follow stream to end (Ctrl-C)
    interrupted: Callable[[], Awaitable[None]] = wait_for_sigint

    def require_client(self) -> AdminClient:
        if self.client is None or not self.client.connected:
            reason = self.client.lost_reason if self.client is not None else None
            raise NotConnected(f"not connected to a server{': ' + reason if reason else ''}")
        return self.client

    def emit(self, text: str) -> None:
        print(text, file=self.out, flush=True)


class QuitRequest:
    """Returned by `quit`: the runner stops after it."""


class Command:
    """Base of every command definition. Subclasses set the class attributes."""

    name: ClassVar[str]
    usage: ClassVar[str]
    # kinds of the positional words, for completion: agent, bundle, process, path,
    # command, word (anything else)
    arguments: ClassVar[tuple[str, ...]] = ()
    needs_server: ClassVar[bool] = True

    def __init__(self) -> None:
        self._parser: CommandParser | None = None

    @property
    def help(self) -> str:
        return inspect.cleandoc(type(self).__doc__ or self.usage)

    @property
    def summary(self) -> str:
        return self.help.splitlines()[0]

    @property
    def parser(self) -> CommandParser:
        if self._parser is None:
            self._parser = CommandParser(self.name, self.usage)
            self.add_arguments(self._parser)
        return self._parser

    def options(self) -> list[str]:
        """Every option string the command accepts (completion)."""
        return [s for action in self.parser._actions for s in action.option_strings]

    def add_arguments(self, parser: CommandParser) -> None:
        """Declare the command's words with argparse."""

    def parse(self, argv: Sequence[str]) -> Any:
        return self.parser.parse(argv)

    async def execute(self, ctx: Context, parsed: Any) -> Any:
        raise NotImplementedError

    def render(self, result: Any, json: bool) -> str:
        raise NotImplementedError

    def succeeded(self, result: Any) -> bool:
        """False when the command ran but did not achieve its aim (an agent failed)."""
        return True
