"""`lotc console` without -c: the interactive console (prompt_toolkit).

trio and prompt_toolkit
-----------------------
prompt_toolkit runs on asyncio; the client and the commands are trio code.
The REPL runs trio in *guest mode* (`trio.lowlevel.start_guest_run`) on
top of the asyncio loop: trio's tasks run as callbacks of the asyncio loop,
on the same thread, while trio's I/O waits happen on a helper thread. Chosen
over a dedicated trio thread because nothing is shared across threads: the
trio side may invalidate the prompt and print (through `patch_stdout`, so
events appear above what the user is typing) without locks or portals, and
the only crossing point is one call each way:

* asyncio -> trio: `TrioToken.run_sync_soon(session.submit, ...)` with the
  parsed line, and `session.interrupt` at Ctrl-C;
* trio -> asyncio: a `done` callback resolving an asyncio future with the
  outcome.

Ctrl-C: at the prompt the terminal is in raw mode and Ctrl-C is a key that
clears the line. While a command runs the terminal is in cooked mode and
Ctrl-C is SIGINT, caught by an asyncio signal handler installed before trio
starts (so trio leaves SIGINT alone) and turned into `session.interrupt`:
the command ends, the connection stays. Ctrl-D on an empty line or `quit`
leaves.
"""
from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TextIO

import outcome as outcomes
import trio
from prompt_toolkit import PromptSession
from prompt_toolkit.auto_suggest import AutoSuggestFromHistory
from prompt_toolkit.patch_stdout import patch_stdout

from admin_console.completion import ConsoleCompleter, tab_key_bindings
from admin_console.errors import UsageError
from admin_console.history import open_history
from admin_console.parsing import split_commands
from admin_console.registry import Invocation, Outcome, Registry, parse_line
from admin_console.script import EXIT_FAILED, EXIT_OK, EXIT_USAGE, PROG, Connection
from admin_console.session import LinkState, Session
from admin_console.toolbar import STYLE, toolbar_text

# trio finishes within this after `stop` (it only closes connections)
SHUTDOWN_TIMEOUT_S = 5.0
TOOLBAR_REFRESH_S = 1.0


def run_repl(connection: Connection, registry: Registry, banner: str = "") -> int:
    """Run the REPL until the user leaves; returns the exit status."""
    return asyncio.run(_main(connection, registry, banner))


async def _main(connection: Connection, registry: Registry, banner: str) -> int:
    with patch_stdout(raw=True), _logs_above_the_prompt():  # raw: progress bars' escapes
        return await Repl(connection, registry).run(banner)


@contextmanager
def _logs_above_the_prompt() -> Iterator[None]:
    """Log records too go through patch_stdout's proxy, or they would mangle the prompt."""
    moved = [h for h in logging.getLogger().handlers
             if isinstance(h, logging.StreamHandler) and h.stream is sys.__stderr__]
    for handler in moved:
        handler.setStream(sys.stderr)
    try:
        yield
    finally:
        for handler in moved:
            handler.setStream(sys.__stderr__)


class Repl:
    def __init__(self, connection: Connection, registry: Registry) -> None:
        self.loop = asyncio.get_running_loop()
        self.registry = registry
        self._changed = asyncio.Event()
        self.session = Session(connection, registry, out=sys.stdout, err=sys.stderr,
                               progress=_is_terminal(sys.__stderr__), changed=self._on_change)
        self.history, self.history_warning = open_history()
        completer = ConsoleCompleter(registry, lambda: self.session.state)
        self.prompt: PromptSession[str] = PromptSession(
            history=self.history,
            completer=completer,
            key_bindings=tab_key_bindings(completer),
            complete_while_typing=True,
            auto_suggest=AutoSuggestFromHistory(),
            bottom_toolbar=lambda: toolbar_text(self.session),
            style=STYLE,
            refresh_interval=TOOLBAR_REFRESH_S,
        )
        self.prompt_text = f"lotc {connection.name}@{connection.address}> "
        self.trio_done: asyncio.Future[outcomes.Outcome[None]] = self.loop.create_future()
        self._pending: asyncio.Future[Outcome] | None = None

    async def run(self, banner: str) -> int:
        self.loop.add_signal_handler(signal.SIGINT, self._on_sigint)
        try:
            trio.lowlevel.start_guest_run(
                self.session.run, run_sync_soon_threadsafe=self.loop.call_soon_threadsafe,
                done_callback=self._on_trio_done, host_uses_signal_set_wakeup_fd=True)
            if not await self._first_attempt():
                print(f"{PROG}: cannot connect to {self.session.where} as "
                      f"{self.session.connection.name}: {self.session.link.reason}",
                      file=sys.stderr)
                return EXIT_USAGE
            if self.history_warning:
                print(self.history_warning, file=sys.stderr)
            if banner:
                print(banner)
            await self._prompt_loop()
        finally:
            status = await self._shutdown()
            self.loop.remove_signal_handler(signal.SIGINT)
        return status

    async def _first_attempt(self) -> bool:
        """Wait for the first connection attempt; False if the server refused us."""
        while not (self.session.first_attempt_over or self.trio_done.done()):
            self._changed.clear()
            await self._changed.wait()
        return self.session.link.state is not LinkState.REFUSED and not self.trio_done.done()

    async def _prompt_loop(self) -> None:
        while not self.trio_done.done():
            try:
                line = await self.prompt.prompt_async(self.prompt_text, handle_sigint=False)
            except KeyboardInterrupt:
                continue  # Ctrl-C at the prompt drops the line, as in a shell
            except EOFError:
                return
            if await self.execute(line) is Outcome.QUIT:
                return

    async def execute(self, line: str) -> Outcome:
        """Parse one typed line (commands split by ';') and run it on the trio side."""
        try:
            parsed = [parse_line(self.registry, piece) for piece in split_commands(line)]
        except UsageError as exc:
            print(f"error: {exc}", file=sys.stderr, flush=True)
            return Outcome.FAILED
        invocations = [i for i in parsed if i is not None]
        if not invocations or self.trio_done.done():
            return Outcome.OK
        return await self._submit(invocations)

    async def _submit(self, invocations: Sequence[Invocation]) -> Outcome:
        future: asyncio.Future[Outcome] = self.loop.create_future()
        self._pending = future

        def done(result: Outcome) -> None:
            if not future.done():
                future.set_result(result)

        assert self.session.token is not None
        self.session.token.run_sync_soon(self.session.submit, invocations, done)
        try:
            return await future
        finally:
            self._pending = None

    # ------------------------------------------------------------ callbacks

    def _on_change(self) -> None:
        self._changed.set()
        self.prompt.app.invalidate()  # no-op when the prompt is not shown

    def _on_sigint(self) -> None:
        if self.session.token is not None and not self.trio_done.done():
            self.session.token.run_sync_soon(self.session.interrupt)

    def _on_trio_done(self, result: outcomes.Outcome[None]) -> None:
        self.trio_done.set_result(result)
        self._changed.set()
        if self._pending is not None and not self._pending.done():
            self._pending.set_result(Outcome.FAILED)
        if self.prompt.app.is_running:
            self.prompt.app.exit(exception=EOFError())

    async def _shutdown(self) -> int:
        if not self.trio_done.done() and self.session.token is not None:
            self.session.token.run_sync_soon(self.session.stop)
        try:
            result = await asyncio.wait_for(asyncio.shield(self.trio_done), SHUTDOWN_TIMEOUT_S)
        except TimeoutError:
            print(f"{PROG}: the connection did not close in time", file=sys.stderr)
            return EXIT_FAILED
        if isinstance(result, outcomes.Error):
            print(f"{PROG}: internal error: {result.error!r}", file=sys.stderr)
            return EXIT_FAILED
        return EXIT_OK


def _is_terminal(stream: TextIO | None) -> bool:
    return stream is not None and stream.isatty()
