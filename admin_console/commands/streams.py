"""`logs` and `events`: replies that arrive over time, and follow streams (-f).

Without -f the server sends what it has (frames flagged MORE) and ends with
OK. With -f it keeps sending until the console sends CANCEL for the request
id, which the console does at Ctrl-C (or whatever `Context.interrupted`
waits for); then the server ends the stream with OK and the command returns.

Human output is printed as frames arrive. JSON output is one document per
command when the command ends by itself; a follow stream cannot wait for its
end, so it prints one JSON document per line instead (JSON Lines).
"""
from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import trio

from admin_console.bounds import agent_selector, count, span
from admin_console.commands.base import Command, Context
from admin_console.parsing import CommandParser, check_name
from admin_console.render import dumps, dumps_line, enum_word, short_time
from lotc.exc_groups import lone_error
from lotc.logstamp import split_timestamp
from lotc.parse.signals import signal_word
from protocol.enums import EventKind, ProcessState, StreamKind
from protocol.message_types import MessageType
from protocol.messages import Event, LogLines, QueryEvents, QueryLogs

if TYPE_CHECKING:
    from admin_console.client import ReplyStream

DEFAULT_LOG_LINES = 20
DEFAULT_EVENTS = 20


@dataclass
class Collected:
    """What a stream command gathered (for JSON) and whether it was followed."""

    items: list[Any] = field(default_factory=list)
    follow: bool = False
    count: int = 0  # items received, printed or not


async def consume(ctx: Context, reply: ReplyStream, follow: bool,
                  on_item: Callable[[Any], None]) -> None:
    """Feed every data frame's body to on_item; with follow, Ctrl-C sends CANCEL."""
    try:
        async with trio.open_nursery() as nursery:
            if follow:
                nursery.start_soon(_cancel_when_interrupted, ctx, reply)
            async for frame in reply:
                if frame.more or not follow:
                    on_item(frame.body)
            nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        # the server's error (unknown agent...) or a lost connection, raised in the
        # nursery's body: give it back as itself, so callers can catch LotcError
        lone = lone_error(group)
        if lone is group:
            raise
        raise lone from None


async def _cancel_when_interrupted(ctx: Context, reply: ReplyStream) -> None:
    await ctx.interrupted()
    await reply.cancel()


async def run_stream(ctx: Context, body: Any, follow: bool, wanted: type,
                     show: Callable[[Any], str],
                     adapt: Callable[[Any], Any] | None = None) -> Collected:
    """Print `wanted` bodies as they come (or collect them for one JSON document);
    `adapt` changes each one first."""
    collected = Collected(follow=follow)

    def on_item(item: Any) -> None:
        if not isinstance(item, wanted):
            return  # the closing OK
        if adapt is not None:
            item = adapt(item)
        collected.count += 1
        if ctx.json and follow:
            ctx.emit(dumps_line(item))
        elif ctx.json:
            collected.items.append(item)
        else:
            ctx.emit(show(item))

    async with ctx.require_client().stream(body, follow=follow) as reply:
        await consume(ctx, reply, follow, on_item)
    return collected


class LogsCommand(Command):
    """Show the last lines of process P's stdout and stderr; -f keeps following.

    -n is the number of lines of each stream (default 20). With -f, new lines
    are printed as the process writes them until Ctrl-C. Each line starts with
    the UTC time the agent read it; --no-timestamps leaves it out.

    Examples:
      logs node-1 web
      logs node-1 web -n 100
      logs all web -f
    """

    name = "logs"
    usage = "logs AGENT P [-n N] [-f] [--no-timestamps]"
    arguments = ("agent", "process")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("agent", type=agent_selector)
        parser.add_argument("process")
        parser.add_argument("-n", "--lines", default=DEFAULT_LOG_LINES,
                            type=count("-n", MessageType.QUERY_LOGS, "lines"))
        parser.add_argument("-f", "--follow", action="store_true")
        parser.add_argument("--no-timestamps", dest="timestamps", action="store_false")

    def parse(self, argv: Sequence[str]) -> LogsArgs:
        args: argparse.Namespace = self.parser.parse(argv)
        query = QueryLogs(target=args.agent, process=check_name("process", args.process),
                          lines=args.lines, follow=args.follow)
        return LogsArgs(query, args.timestamps)

    async def execute(self, ctx: Context, parsed: LogsArgs) -> Collected:
        return await run_stream(ctx, parsed.query, parsed.query.follow, LogLines, log_text,
                                adapt=None if parsed.timestamps else without_timestamps)

    def render(self, result: Collected, json: bool) -> str:
        if json and not result.follow:
            return dumps({"logs": result.items})
        return "no log lines" if not (json or result.follow or result.count) else ""


@dataclass(frozen=True)
class LogsArgs:
    query: QueryLogs
    timestamps: bool  # keep the time each line starts with (--no-timestamps: drop it)


def without_timestamps(item: LogLines) -> LogLines:
    return replace(item, lines=tuple(split_timestamp(line)[1] for line in item.lines))


def log_text(item: LogLines) -> str:
    mark = "!" if item.stream == StreamKind.STDERR else "|"
    prefix = f"{item.agent}/{item.process} {mark} "
    return "\n".join(prefix + line for line in item.lines)


@dataclass(frozen=True)
class EventsArgs:
    pattern: str
    since_s: float | None
    limit: int
    follow: bool


class EventsCommand(Command):
    """Show recent events (state changes, missed liveness, agents on/offline...).

    AGENT narrows them to the agents a selector matches (see `help label`).
    --since limits how far back (e.g. 10m, 2h), -n how many (default 20). With -f, new events
    are printed as they happen until Ctrl-C.

    Examples:
      events
      events node-1 --since 1h
      events -f
    """

    name = "events"
    usage = "events [AGENT] [--since DURATION] [-n N] [-f]"
    arguments = ("agent",)

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("agent", nargs="?", default="", type=agent_selector)  # "": all
        parser.add_argument("--since", type=span("--since"))
        parser.add_argument("-n", "--limit", default=DEFAULT_EVENTS,
                            type=count("-n", MessageType.QUERY_EVENTS, "limit"))
        parser.add_argument("-f", "--follow", action="store_true")

    def parse(self, argv: Sequence[str]) -> EventsArgs:
        args: argparse.Namespace = self.parser.parse(argv)
        return EventsArgs(args.agent, args.since, args.limit, args.follow)

    async def execute(self, ctx: Context, parsed: EventsArgs) -> Collected:
        since_us = 0
        if parsed.since_s is not None:
            since_us = time.time_ns() // 1000 - int(parsed.since_s * 1e6)
        body = QueryEvents(pattern=parsed.pattern, since_us=since_us, limit=parsed.limit,
                           follow=parsed.follow)
        return await run_stream(ctx, body, parsed.follow, Event, event_text)

    def render(self, result: Collected, json: bool) -> str:
        if json and not result.follow:
            return dumps({"events": result.items})
        return "no events" if not (json or result.follow or result.count) else ""


def event_text(event: Event) -> str:
    """'2024-05-01 12:00:03Z  node-1  web  starting -> running  (message)'."""
    parts = [short_time(event.time_us), event.agent]
    if event.kind == EventKind.PROCESS_STATE:
        parts += [event.process, f"{enum_word(event.old_state)} -> {enum_word(event.new_state)}"]
    else:
        parts += [event.process, enum_word(event.kind)] if event.process \
            else [enum_word(event.kind)]
    if event.exit_code >= 0 and event.new_state in (ProcessState.EXITED, ProcessState.FAILED,
                                                    ProcessState.BACKOFF):
        parts.append(f"exit code {event.exit_code}")
    if event.signal:
        parts.append(signal_word(event.signal))
    if event.message:
        parts.append(event.message)
    return "  ".join(parts)
