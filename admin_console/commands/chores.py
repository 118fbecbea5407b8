"""`exec SELECTOR -- CMD ARGS...`: a command run once on many agents (issue 20 item 1)."""
from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any, ClassVar

from admin_console.bounds import agent_selector, milliseconds
from admin_console.commands.base import Command, Context
from admin_console.commands.process import (
    DEFAULT_HEALTHY_DEADLINE_MS,
    ROLL_WAIT_S,
    process_option,
)
from admin_console.commands.results import ResultsCommand, request_results
from admin_console.errors import UsageError
from admin_console.parsing import CommandParser, check_name
from admin_console.render import dumps, table
from lotc.errors import InvalidRequest
from lotc.names import validate_sha_prefix
from protocol.message_types import MessageType
from protocol.messages import AgentResult, ExecResult, ExecRun, Rollback

__all__ = ["ExecConsoleCommand", "RollbackCommand"]

DEFAULT_TIMEOUT_MS = 30_000
REPLY_MARGIN_S = 30.0  # beyond the timeout, for the slowest agent's kill and answer
SHOWN = 60  # characters of output in the table
CAP_WORDS = "512 KiB of stdout and of stderr kept per agent"


def _text(data: bytes) -> str:
    return data.decode(errors="replace")


def _first_line(result: ExecResult) -> str:
    for data in (result.stdout, result.stderr):
        for line in _text(data).splitlines():
            if line.strip():
                return line[:SHOWN] + ("..." if len(line) > SHOWN else "")
    return result.message or ""


def _status(result: ExecResult) -> str:
    if result.status == "exited":
        return f"exit {result.exit_code}"
    if result.status == "killed":
        return f"signal {result.signal}"
    return result.status


class ExecConsoleCommand(Command):
    """Run a command once on every agent SELECTOR names, and show what each printed.

    The command runs without a shell, in its own cgroup (killed whole at
    --timeout, default 30s, children that left its session too), as --user
    when given (the agent must run as root), in that user's home directory.
    At most --parallel N agents run it at once (default: all). An agent that
    is offline is reported as such, never queued for later. The table shows
    each agent's status, duration and first line of output; --json gives the
    whole output (512 KiB of stdout and of stderr kept per agent, the cut said).
    The exit status is 1 when any agent did not exit 0. A server started with
    --no-exec refuses it.

    Examples:
      exec all -- uptime
      exec web-* --timeout 10s -- systemctl is-active nginx
      exec all --parallel 5 --user deploy -- sh -c 'df -h /srv'
    """

    name = "exec"
    usage = "exec AGENT [--timeout 30s] [--parallel N] [--user U[:G]] -- CMD ARGS..."
    arguments: ClassVar[tuple[str, ...]] = ("agent",)

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("agent", type=agent_selector)
        parser.add_argument("--timeout", default=DEFAULT_TIMEOUT_MS, type=milliseconds(
            "--timeout", MessageType.EXEC_RUN, "timeout_ms", zero_means="is not allowed"))
        parser.add_argument("--parallel", type=int, default=0)
        parser.add_argument("--user", type=process_option("user"))

    def parse(self, argv: Sequence[str]) -> ExecRun:
        words = list(argv)
        if "--" not in words or not words[words.index("--") + 1:]:
            raise UsageError("nothing to run: give the command after '--'", self.usage)
        split = words.index("--")
        args: argparse.Namespace = self.parser.parse(words[:split])
        if args.timeout == 0:
            raise UsageError("--timeout 0 is not allowed: give how long it may run", self.usage)
        if not 0 <= args.parallel <= 0xFFFF:
            raise UsageError("--parallel is a number of agents from 1 (0: all at once)",
                             self.usage)
        return ExecRun(target=args.agent, argv=tuple(words[split + 1:]),
                       timeout_ms=args.timeout, parallel=args.parallel, user=args.user or "")

    async def execute(self, ctx: Context, parsed: ExecRun) -> list[ExecResult]:
        frames = await ctx.require_client().request(
            parsed, timeout=parsed.timeout_ms / 1000 + REPLY_MARGIN_S)
        return [frame.body for frame in frames if isinstance(frame.body, ExecResult)]

    def render(self, result: Any, json: bool) -> str:
        if json:
            return dumps({"exec": [{
                "agent": r.agent, "status": r.status,
                "exit_code": None if r.exit_code < 0 else r.exit_code,
                "signal": r.signal or None, "duration_s": r.duration_us / 1e6,
                "stdout": _text(r.stdout), "stderr": _text(r.stderr),
                "truncated": r.truncated, "message": r.message} for r in result]})
        rows = [(r.agent, _status(r), f"{r.duration_us / 1e6:.2f}s", _first_line(r))
                for r in result]
        text = table(("AGENT", "STATUS", "DURATION", "OUTPUT"), rows)
        cut = [r.agent for r in result if r.truncated]
        if cut:
            text += f"\noutput cut on {', '.join(cut)}: {CAP_WORDS} (--json shows what was kept)"
        return text

    def succeeded(self, result: Any) -> bool:
        return all(r.status == "exited" and r.exit_code == 0 for r in result)


class RollbackCommand(ResultsCommand):
    """Put an earlier version of BUNDLE back on the agents AGENT names, and restart the
    processes that run it on that version.

    SHA is the start of the version's SHA-256 (`bundles AGENT --versions` lists
    the versions each agent keeps: the current one and the newest 3 it
    replaced); without it, the version before the current one. It rolls like
    `restart --rolling`: --max-unavailable agents at a time (default 1), each
    batch ready within --healthy-deadline (30s) before the next; a batch that
    is not stops the rollback and says where. The server records the version
    as the one wanted, so a reconnecting agent keeps it.

    Examples:
      rollback all web
      rollback role=web web 3f2a9c --max-unavailable 2
    """

    name = "rollback"
    usage = "rollback AGENT BUNDLE [SHA] [--max-unavailable N] [--healthy-deadline 30s]"
    arguments: ClassVar[tuple[str, ...]] = ("agent", "bundle", "word")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("agent", type=agent_selector)
        parser.add_argument("bundle")
        parser.add_argument("sha", nargs="?", default="")
        parser.add_argument("--max-unavailable", type=int, default=1)
        parser.add_argument("--healthy-deadline", default=DEFAULT_HEALTHY_DEADLINE_MS,
                            type=milliseconds("--healthy-deadline", MessageType.ROLLBACK,
                                              "healthy_deadline_ms", zero_means="is not allowed"))

    def parse(self, argv: Sequence[str]) -> Rollback:
        args: argparse.Namespace = self.parser.parse(argv)
        try:
            sha = validate_sha_prefix(args.sha)
        except InvalidRequest as exc:
            raise UsageError(str(exc), self.usage) from None
        if not 1 <= args.max_unavailable <= 0xFFFF or not args.healthy_deadline:
            raise UsageError("--max-unavailable is from 1; --healthy-deadline longer than 0",
                             self.usage)
        return Rollback(target=args.agent, name=check_name("bundle", args.bundle),
                        sha256=sha, max_unavailable=args.max_unavailable,
                        healthy_deadline_ms=args.healthy_deadline)

    async def execute(self, ctx: Context, parsed: Rollback) -> tuple[AgentResult, ...]:
        return await request_results(ctx.require_client(), parsed, ROLL_WAIT_S)
