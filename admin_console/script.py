"""The scripted console: `lotc console -c "CMD; CMD"` and `-f SCRIPT`.

Every command is parsed before anything runs, so a typo in the last command
does not leave the first ones half done; then the console connects (only if
some command needs the server) and runs them in order, stopping at the first
failure. Exit status: 0 all went well, 1 a command failed (the server said
no, or an agent did), 2 a usage error or no connection.
"""
from __future__ import annotations

import logging
import socket
import ssl
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import trio

from admin_console.client import AdminClient
from admin_console.commands.base import Context
from admin_console.errors import ConsoleError, UsageError
from admin_console.parsing import shown, split_commands, strip_comment
from admin_console.registry import Invocation, Outcome, Registry, parse_line, run_invocation
from lotc.errors import LotcError
from lotc.net.address import Address
from lotc.net.framed import PeerClosed

logger = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
PROG = "lotc console"

# What can go wrong while connecting and authenticating, before any command runs.
CONNECT_ERRORS = (OSError, trio.TooSlowError, trio.BrokenResourceError, PeerClosed, LotcError)


@dataclass(frozen=True)
class Connection:
    """Where and as whom to connect."""

    address: Address
    token: str
    name: str
    ssl_context: ssl.SSLContext | None = None
    wait_s: float = 0.0  # --wait: try a server that is not listening yet for this long


@dataclass
class Streams:
    out: TextIO = field(default_factory=lambda: sys.stdout)
    err: TextIO = field(default_factory=lambda: sys.stderr)


def lines_of_command_string(text: str) -> list[tuple[str, str]]:
    """`-c` text -> (where, command) pairs; `where` names the command in errors."""
    return [(f"command {i}", line) for i, line in enumerate(split_commands(text), 1)]


def lines_of_script(text: str, name: str) -> list[tuple[str, str]]:
    """A script: one command per line (or several split by ';'); '#' starts a comment."""
    found: list[tuple[str, str]] = []
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = strip_comment(raw).strip()
        if not stripped:
            continue
        found.extend((f"{name}:{number}", line) for line in split_commands(stripped))
    return found


def read_script(path: str) -> list[tuple[str, str]]:
    if path == "-":
        return lines_of_script(sys.stdin.read(), "stdin")
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read script {path}: {exc}") from None
    return lines_of_script(text, path)


def plan(registry: Registry, lines: Iterable[tuple[str, str]]) -> list[Invocation]:
    """Parse every command; the first bad one raises UsageError naming where it is."""
    invocations = []
    for where, line in lines:
        try:
            invocation = parse_line(registry, line)
        except UsageError as exc:
            raise UsageError(f"{where} ({shown(line)}): {exc}") from None
        if invocation is not None:
            invocations.append(invocation)
    return invocations


async def run_all(ctx: Context, invocations: Iterable[Invocation], err: TextIO) -> int:
    for invocation in invocations:
        line = shown(invocation.line, quoted=False)  # a pasted 1 MB line is not echoed whole
        try:
            outcome = await run_invocation(ctx, invocation)
        except (LotcError, ConsoleError) as exc:
            print(f"{PROG}: {line}: {exc}", file=err, flush=True)
            return EXIT_FAILED
        if outcome is Outcome.QUIT:
            break
        if outcome is Outcome.FAILED:
            print(f"{PROG}: {line}: failed (see above); stopping here", file=err, flush=True)
            return EXIT_FAILED
    return EXIT_OK


async def run_script(registry: Registry, invocations: list[Invocation],
                     connection: Connection | None, *, json: bool = False,
                     streams: Streams | None = None) -> int:
    """Connect if needed and run the planned commands; returns the exit status."""
    streams = streams or Streams()
    ctx = Context(None, registry, json=json, out=streams.out, err=streams.err,
                  progress=_is_terminal(streams.err))
    if connection is None or not any(i.command.needs_server for i in invocations):
        return await run_all(ctx, invocations, streams.err)
    entered = False
    try:
        async with AdminClient.connect(connection.address, token=connection.token,
                                       name=connection.name,
                                       ssl_context=connection.ssl_context,
                                       wait_s=connection.wait_s) as client:
            entered = True
            ctx.client = client
            return await run_all(ctx, invocations, streams.err)
    except CONNECT_ERRORS as exc:
        if entered:
            raise
        print(f"{PROG}: cannot connect to {connection.address} as {connection.name}: "
              f"{describe_connect_error(exc)}", file=streams.err, flush=True)
        return EXIT_USAGE


def describe_connect_error(exc: BaseException) -> str:
    # trio.open_tcp_stream says "all attempts failed" and keeps each attempt's reason
    # in a group as the cause; the first one is what the user needs to hear
    cause = exc.__cause__
    if isinstance(exc, OSError) and isinstance(cause, BaseExceptionGroup) and cause.exceptions:
        exc = cause.exceptions[0]
    if isinstance(exc, trio.TooSlowError):
        return "no answer in time"
    if isinstance(exc, (PeerClosed, trio.BrokenResourceError)):
        return ("the server closed the connection during the handshake "
                "(if the server uses TLS, give --tls-ca)")
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (is the server running, and is this its admin port?)"
    if isinstance(exc, socket.gaierror):
        return f"unknown host ({exc.strerror})"
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    return str(exc)


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
