"""Schedules: `schedule`, `schedules`, `unschedule`.

A schedule is desired state on the server (kept through disconnects and
restarts) and is executed by the agent on its NTP-corrected clock, so it
fires while the server is away. Everything the console can check is checked
here before anything is sent: the action, the cron syntax, the time zone,
the time (with a zone, not in the past).
"""
from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TypeVar

from admin_console.bounds import agent_selector, span
from admin_console.commands.listing import ListCommand, Listing, now_us
from admin_console.commands.results import ResultsCommand
from admin_console.errors import UsageError
from admin_console.parsing import CommandParser, check_name, signal_name
from admin_console.render import ago, enum_word, iso_time, short_time, table
from lotc.errors import InvalidRequest
from lotc.parse.crontimes import parse_cron, parse_zone
from protocol.enums import Action, ScheduleKind
from protocol.messages import (
    ListSchedules,
    ScheduleClear,
    ScheduleEntry,
    ScheduleList,
    ScheduleSet,
)

ACTIONS = {enum_word(action): action for action in Action}
KINDS = {"cron": ScheduleKind.CRON, "at": ScheduleKind.AT}
MAX_ID = 2**63 - 1  # ids travel as 64-bit numbers
T = TypeVar("T")
_DELAY = span("the delay")
TIME_HELP = ("use an ISO time with a zone (at 2026-11-24T02:00:00Z, at 2026-11-24T03:00:00+01:00) "
             "or a delay (in 10m, +10m, at in 10m, at +10m)")
RELATIVE = "in"  # `in 10m`; a word starting with '+' is a delay too (`+10m`)


class ScheduleCommand(ResultsCommand):
    """Act on process P at set times: on a cron expression, or once at a time.

    ACTION is start, stop, resume, terminate, kill or restart (kill takes
    --signal, SIGKILL by default). stop suspends (SIGSTOP) and resume
    continues; terminate ends the process (SIGTERM, then SIGKILL). The agent keeps its schedules and fires
    them on its NTP-corrected clock, also while the server is unreachable
    and after an agent restart; the server records each fire as an event
    and moves the process's desired state with it.

    cron "EXPR": five fields MINUTE HOUR DAY MONTH WEEKDAY (or @daily,
    @hourly...), in --tz ZONE (an IANA name; UTC by default). A wall time
    skipped or repeated by a DST change fires once.

    at TIME: once. TIME is an ISO date and time with a zone: Z for UTC or an
    offset (+01:00); a time without a zone is refused rather than guessed.
    in DELAY or +DELAY (also after 'at': 'at in 10m', 'at +10m'): once,
    that long from now (the console's clock). A time in the past is refused. If the agent was down at that time and returns
    within a minute it fires late (the event says LATE); later, the fire is
    skipped and reported as missed.

    Examples:
      schedule node-1 nightly start cron "0 2 * * *" --tz Europe/Paris
      schedule all demo terminate cron "0 18 * * mon-fri"
      schedule web-* web restart at 2099-11-24T02:00:00Z
      schedule node-1 web kill +30s --signal HUP
      schedule node-1 web restart in 10m
    """

    name = "schedule"
    usage = ('schedule AGENT P ACTION cron "EXPR" [--tz ZONE] [--signal SIG]  |  '
             "schedule AGENT P ACTION at ISO-TIME|in DELAY|+DELAY [--signal SIG]")
    arguments = ("agent", "process", "action", "when")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("agent", type=agent_selector)
        parser.add_argument("process")
        parser.add_argument("action")
        parser.add_argument("kind", nargs="?", default="")  # checked in parse, in plain words
        parser.add_argument("when", nargs="*", default=[])
        parser.add_argument("--tz", "--zone", dest="tz", default="")
        parser.add_argument("--signal", type=signal_name)  # None: SIGKILL for kill

    def parse(self, argv: Sequence[str]) -> ScheduleSet:
        return self.parse_at_time(argv, now_us())

    def parse_at_time(self, argv: Sequence[str], now: int) -> ScheduleSet:
        """`parse` with the current time given (relative times, the past check)."""
        args: argparse.Namespace = self.parser.parse(argv)
        action = ACTIONS.get(args.action.lower())
        if action is None:
            raise UsageError(f"unknown action {args.action!r}: use one of {', '.join(ACTIONS)}")
        if not args.kind:
            raise UsageError("missing when: 'cron \"EXPR\"', 'at TIME' or 'in DELAY' after "
                             "the action")
        if args.kind.lower() == RELATIVE or args.kind.startswith("+"):
            args.when, args.kind = [args.kind, *args.when], "at"  # `in 10m`, `+10m`
        kind = KINDS.get(args.kind.lower())
        if kind is None:
            raise UsageError(f"expected 'cron', 'at' or 'in' after the action, "
                             f"not {args.kind!r}")
        if args.signal and action != Action.KILL:
            raise UsageError("--signal goes with the kill action only")
        cron, at_us = "", 0
        if kind == ScheduleKind.CRON:
            if not args.when:
                raise UsageError('missing the cron expression: give it in quotes, '
                                 'e.g. cron "0 2 * * *"')
            cron = _checked(parse_cron, " ".join(args.when))
            _checked(parse_zone, args.tz)
        else:
            if args.tz:
                raise UsageError("--tz goes with cron only: an 'at' time carries its own zone "
                                 "(Z or an offset such as +01:00)")
            at_us = parse_time(args.when, now)
        return ScheduleSet(target=args.agent, schedule=ScheduleEntry(
            id=0, agent="", process=check_name("process", args.process), action=action,
            signal=args.signal or "", kind=kind, cron=cron, tz=args.tz if cron else "", at_us=at_us))


def _checked(check: Callable[[str], T], text: str) -> T:
    """Run a lotc.parse.crontimes check; its InvalidRequest becomes a UsageError."""
    try:
        return check(text)
    except InvalidRequest as exc:
        raise UsageError(str(exc)) from None


def parse_time(words: Sequence[str], now: int) -> int:
    """The words after `at` -> UTC microseconds: ISO time with a zone, `+30s` or `in 10m`."""
    if not words:
        raise UsageError(f"missing the time after 'at': {TIME_HELP}")
    text = " ".join(words)
    if len(words) == 2 and words[0].lower() == RELATIVE:
        delay = _DELAY(words[1])
    elif len(words) == 1 and text.startswith("+"):
        delay = _DELAY(text[1:])
    elif len(words) == 1:
        return _absolute_time(text, now)
    else:
        raise UsageError(f"cannot read the time {text!r}: {TIME_HELP}")
    if delay <= 0:
        raise UsageError(f"the delay {text!r} must be more than zero")
    return now + round(delay * 1_000_000)


def _absolute_time(text: str, now: int) -> int:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"cannot read the time {text!r}: {TIME_HELP}") from None
    if moment.tzinfo is None:
        raise UsageError(f"the time {text!r} has no zone: add Z for UTC ({text}Z) or an offset "
                         "such as +01:00")
    at_us = round(moment.timestamp() * 1_000_000)
    if at_us <= now:
        raise UsageError(f"the time {text} is in the past (now is {iso_time(now)} "
                         "on this console's clock)")
    return at_us


class SchedulesCommand(ListCommand):
    """List schedules: what they do, when, and their next and last fire.

    NEXT is the planned fire ('-' for an 'at' schedule that has fired);
    LAST the most recent fire. For an agent that is offline both are the
    server's last knowledge, refreshed when it reconnects.

    Examples:
      schedules
      schedules node-1
    """

    name = "schedules"
    usage = "schedules [AGENT]"
    request_type = ListSchedules
    reply_type = ScheduleList
    reply_field = "schedules"

    def table(self, result: Listing) -> str:
        entries = sorted(result.entries, key=lambda s: s.id)
        rows = [_schedule_row(s, result.now_us) for s in entries]
        return table(("ID", "AGENT", "PROCESS", "ACTION", "WHEN", "NEXT", "LAST"), rows,
                     right=(0,))


def _schedule_row(s: ScheduleEntry, now: int) -> tuple[object, ...]:
    action = enum_word(s.action) + (f" {s.signal}" if s.signal else "")
    nxt = f"{ago(s.next_fire_us, now)} ({short_time(s.next_fire_us)})" if s.next_fire_us else "-"
    return (s.id, s.agent, s.process, action, when_text(s), nxt, ago(s.last_fire_us, now))


def when_text(s: ScheduleEntry) -> str:
    """'0 2 * * * (Europe/Paris)' or 'at 2026-11-24T02:00:00Z'."""
    if s.kind == ScheduleKind.AT:
        return f"at {(iso_time(s.at_us) or '-').replace('.000Z', 'Z')}"
    return f"{s.cron} ({s.tz or 'UTC'})"


class UnscheduleCommand(ResultsCommand):
    """Remove schedule ID (the number shown by 'schedules') from the server and its agent.

    An offline agent drops it when it reconnects.

    Examples:
      unschedule 7
    """

    name = "unschedule"
    usage = "unschedule ID"
    arguments = ("schedule",)

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("id")

    def parse(self, argv: Sequence[str]) -> ScheduleClear:
        args: argparse.Namespace = self.parser.parse(argv)
        text = args.id.lstrip("#")
        if not text.isdigit() or not 0 < int(text) <= MAX_ID:
            raise UsageError(f"bad schedule id {args.id!r}: use the number shown by 'schedules'")
        return ScheduleClear(target="", id=int(text))
