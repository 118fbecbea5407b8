"""Fire times of schedules: pure computation (no I/O, no clock, no trio).

Theory of operation. A cron expression speaks of wall-clock times in a zone;
a fire is an instant (UTC microseconds). croniter walks wall time well, but
its own DST handling is where the bugs live (it yields a repeated hour twice,
and with Lord Howe's 30-minute shift `get_next` skips a valid time:
pallets-eco/croniter#258). So croniter never sees a time zone here: it walks
*naive wall-clock time* (presented to it as UTC, where no DST exists), and we
map each matching wall time W to an instant ourselves with zoneinfo:

* W exists once: its instant.
* W exists twice (fall-back fold): the FIRST occurrence only. The repeated
  pass maps to the same instant as the first and is dropped, so a schedule
  fires once per wall time, never twice.
* W does not exist (spring-forward gap): the instant the clocks jumped, i.e.
  the end of the gap (`30 2 * * *` fires at 03:00 on that day in New York;
  `0 * * * *` fires at 02:30+11:00 in Lord Howe, the time croniter#258 skips).
  Several gap times collapse onto that one instant and fire once.

This is ISC cron's documented behaviour (jobs in a skipped interval run right
after the jump; jobs in a repeated interval run once) and matches croniter's
own answer for whole-hour zones, minus its double fire and its #258 skip.
The mapping is non-decreasing in W, so walking W forward and dropping every
instant not later than the previous one yields strictly increasing fires.

Accepted cron syntax: five fields (minute hour day month weekday, with
croniter's extensions L, #, names) or @yearly/@annually/@monthly/@weekly/
@daily/@midnight/@hourly. Not accepted: a sixth seconds field (croniter puts
it last, unlike other tools: too easy to misread), @reboot, and the H/R
(hashed/random) fields, whose fire times are not stable across restarts.
"""
from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, CroniterError, croniter

from lotc.errors import InvalidRequest
from protocol.enums import ScheduleKind

__all__ = ["FireRule", "format_us", "iter_fires", "next_fire", "parse_cron", "parse_zone", "validate"]

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ONE_US = timedelta(microseconds=1)
ALIASES = frozenset({"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight",
                     "@hourly"})
MAX_SKIPS = 100_000  # candidates collapsing onto an earlier fire (a 1 h gap at 1/min is 60)
_UNSTABLE_FIELD = re.compile(r"(?:^|[\s,])[HhRr](?:$|[\s,(/])")
CRON_HELP = "expected 5 fields 'MINUTE HOUR DAY MONTH WEEKDAY' (e.g. '0 2 * * *') or @daily"


class FireRule(Protocol):
    """What fire times depend on (ScheduleSpec satisfies it)."""

    @property
    def kind(self) -> ScheduleKind: ...
    @property
    def cron(self) -> str: ...
    @property
    def tz(self) -> str: ...
    @property
    def at_us(self) -> int: ...


def parse_zone(tz: str) -> tzinfo:
    """IANA zone name -> tzinfo; "" means UTC. InvalidRequest in plain words."""
    if not tz or tz.upper() == "UTC":
        return UTC
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise InvalidRequest(
            f"unknown time zone {tz!r}: use an IANA name such as Europe/Paris or UTC") from None


def parse_cron(expr: str) -> str:
    """Check a cron expression; return it normalised (single spaces). InvalidRequest if bad."""
    text = " ".join(expr.split())
    if not text:
        raise InvalidRequest(f"empty cron expression: {CRON_HELP}")
    if text.startswith("@"):
        if text.lower() not in ALIASES:
            raise InvalidRequest(f"unknown cron shortcut {text!r}: use one of "
                                 + ", ".join(sorted(ALIASES)))
        text = text.lower()
    elif len(text.split()) != 5:
        raise InvalidRequest(f"cron expression {expr!r} has {len(text.split())} fields: "
                             + CRON_HELP)
    if _UNSTABLE_FIELD.search(text):
        raise InvalidRequest(f"cron expression {expr!r} uses H or R (hashed/random) fields, "
                             "whose times would change on every agent restart")
    try:
        croniter(text, datetime(2000, 1, 1, tzinfo=UTC)).get_next(datetime)
    except CroniterBadDateError:
        raise InvalidRequest(f"cron expression {expr!r} never fires") from None
    except (CroniterError, ValueError, KeyError) as exc:
        raise InvalidRequest(f"invalid cron expression {expr!r}: {exc}") from None
    return text


def validate(rule: FireRule) -> None:
    """Raise InvalidRequest unless `rule` can produce fire times."""
    if rule.kind == ScheduleKind.CRON:
        parse_cron(rule.cron)
        parse_zone(rule.tz)
    elif rule.kind == ScheduleKind.AT:
        if rule.at_us <= 0:
            raise InvalidRequest("an 'at' schedule needs a time (ISO date and time, UTC)")
    else:
        raise InvalidRequest(f"unknown schedule kind {rule.kind!r}")


def next_fire(rule: FireRule, after_us: int) -> int | None:
    """The first fire strictly after `after_us` (UTC microseconds), or None when there is none."""
    return next(iter_fires(rule, after_us), None)


def iter_fires(rule: FireRule, after_us: int) -> Iterator[int]:
    """Fire instants strictly after `after_us`, strictly increasing."""
    if rule.kind == ScheduleKind.AT:
        if rule.at_us > after_us:
            yield rule.at_us
        return
    yield from _cron_fires(parse_cron(rule.cron), parse_zone(rule.tz), after_us)


def _cron_fires(expr: str, zone: tzinfo, after_us: int) -> Iterator[int]:
    start_wall = _to_datetime(after_us).astimezone(zone).replace(tzinfo=UTC)
    walker = croniter(expr, start_wall)
    last, skipped = after_us, 0
    while skipped <= MAX_SKIPS:
        try:
            wall = walker.get_next(datetime)
        except CroniterBadDateError:  # no match within croniter's horizon: no more fires
            return
        instant = instant_of_wall(wall.replace(tzinfo=None), zone)
        if instant > last:
            yield instant
            last, skipped = instant, 0
        else:  # the repeated pass of a fold, or a gap time already fired at the jump
            skipped += 1


def instant_of_wall(wall: datetime, zone: tzinfo) -> int:
    """Naive wall time in `zone` -> UTC microseconds, by the rules in the module docstring."""
    first = _to_us(wall.replace(tzinfo=zone, fold=0))
    second = _to_us(wall.replace(tzinfo=zone, fold=1))
    if first <= second:  # exists once (equal) or twice (fold: take the first occurrence)
        return first
    # A gap: PEP 495 reads it with the offset from before the jump (fold=0, later
    # instant) or after it (fold=1, earlier instant); the jump lies between.
    return _jump_between(zone, second, first)


def _jump_between(zone: tzinfo, low_us: int, high_us: int) -> int:
    """The instant in (low, high] where the zone's offset changes to the one at `high`."""
    low_s, high_s = low_us // 1_000_000, -(-high_us // 1_000_000)
    target = _offset(zone, high_s)
    while high_s - low_s > 1:  # transitions fall on whole seconds
        middle = (low_s + high_s) // 2
        if _offset(zone, middle) == target:
            high_s = middle
        else:
            low_s = middle
    return high_s * 1_000_000


def _offset(zone: tzinfo, unix_s: int) -> timedelta | None:
    return _to_datetime(unix_s * 1_000_000).astimezone(zone).utcoffset()


def format_us(unix_us: int) -> str:
    """UTC microseconds -> '2024-03-10T07:00:00.000Z' (how fire times read in messages)."""
    seconds, micro = divmod(unix_us, 1_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{micro // 1000:03d}Z"


def _to_datetime(unix_us: int) -> datetime:
    return EPOCH + timedelta(microseconds=unix_us)


def _to_us(moment: datetime) -> int:
    return (moment - EPOCH) // ONE_US
