from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter
from hypothesis import given, settings
from hypothesis import strategies as st

from lotc.errors import InvalidRequest
from lotc.parse.crontimes import iter_fires, next_fire, parse_cron, parse_zone, validate
from protocol.enums import ScheduleKind

MINUTE_US = 60_000_000
HOUR_US = 60 * MINUTE_US


@dataclass(frozen=True)
class Rule:
    kind: ScheduleKind = ScheduleKind.CRON
    cron: str = ""
    tz: str = ""
    at_us: int = 0


def _us(year: int, month: int, day: int, hour: int, minute: int = 0, *, tz: str) -> int:
    """A wall time (first occurrence if repeated) as UTC microseconds."""
    moment = datetime(year, month, day, hour, minute, tzinfo=ZoneInfo(tz))
    return int(moment.timestamp()) * 1_000_000


def _utc(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()) * 1_000_000


def _fires(cron: str, tz: str, after_us: int, count: int) -> list[int]:
    return list(itertools.islice(iter_fires(Rule(cron=cron, tz=tz), after_us), count))


def _walls(fires: list[int], tz: str) -> list[str]:
    zone = ZoneInfo(tz)
    return [datetime.fromtimestamp(f / 1e6, zone).strftime("%m-%d %H:%M%z") for f in fires]


# ------------------------------------------------------------------ known DST changes

def test_new_york_spring_forward_fires_the_missing_time_once_at_the_jump() -> None:
    fires = _fires("30 2 * * *", "America/New_York", _us(2024, 3, 9, 12, tz="UTC"), 3)
    assert _walls(fires, "America/New_York") == [
        "03-10 03:00-0400", "03-11 02:30-0400", "03-12 02:30-0400"]
    assert fires[0] == _utc("2024-03-10T07:00")


def test_new_york_fall_back_fires_the_repeated_time_once() -> None:
    fires = _fires("30 1 * * *", "America/New_York", _us(2024, 11, 2, 12, tz="UTC"), 2)
    assert fires == [_utc("2024-11-03T05:30"), _utc("2024-11-04T06:30")]


def test_paris_spring_forward_and_fall_back() -> None:
    spring = _fires("30 2 * * *", "Europe/Paris", _utc("2024-03-30T12:00"), 2)
    assert spring == [_utc("2024-03-31T01:00"), _utc("2024-04-01T00:30")]  # 03:00 CEST, then 02:30
    autumn = _fires("30 2 * * *", "Europe/Paris", _utc("2024-10-26T12:00"), 2)
    assert autumn == [_utc("2024-10-27T00:30"), _utc("2024-10-28T01:30")]  # CEST once, then CET


def test_paris_hourly_over_fall_back_skips_only_the_repeated_hour() -> None:
    fires = _fires("0 * * * *", "Europe/Paris", _utc("2024-10-26T22:30"), 4)
    assert _walls(fires, "Europe/Paris") == [
        "10-27 01:00+0200", "10-27 02:00+0200", "10-27 03:00+0100", "10-27 04:00+0100"]


def test_every_quarter_hour_over_new_york_fall_back() -> None:
    fires = _fires("*/15 * * * *", "America/New_York", _utc("2024-11-03T04:50"), 6)
    assert _walls(fires, "America/New_York") == [
        "11-03 01:00-0400", "11-03 01:15-0400", "11-03 01:30-0400", "11-03 01:45-0400",
        "11-03 02:00-0500", "11-03 02:15-0500"]


def test_starting_inside_the_repeated_hour_waits_for_its_end() -> None:
    # 01:20 EST is the second pass; 01:30 and 01:45 already fired in the first pass.
    after = _utc("2024-11-03T06:20")
    assert _walls(_fires("*/15 * * * *", "America/New_York", after, 1), "America/New_York") == [
        "11-03 02:00-0500"]


def test_lord_howe_half_hour_spring_forward_does_not_skip_croniter_258() -> None:
    # croniter's own get_next jumps from 01:43 straight to 03:00 here.
    fires = _fires("0 * * * *", "Australia/Lord_Howe", _us(2019, 10, 6, 1, 43,
                                                           tz="Australia/Lord_Howe"), 3)
    assert _walls(fires, "Australia/Lord_Howe") == [
        "10-06 02:30+1100", "10-06 03:00+1100", "10-06 04:00+1100"]


def test_lord_howe_half_hour_fall_back_fires_once() -> None:
    fires = _fires("45 1 * * *", "Australia/Lord_Howe", _utc("2024-04-06T00:00"), 2)
    assert _walls(fires, "Australia/Lord_Howe") == ["04-07 01:45+1100", "04-08 01:45+1030"]


def test_midnight_that_does_not_exist_fires_at_one() -> None:
    fires = _fires("0 0 * * *", "America/Havana", _utc("2024-03-09T17:00"), 2)
    assert _walls(fires, "America/Havana") == ["03-10 01:00-0400", "03-11 00:00-0400"]


def test_empty_zone_is_utc_and_aliases_work() -> None:
    assert next_fire(Rule(cron="@daily"), _utc("2024-05-01T10:00")) == _utc("2024-05-02T00:00")
    assert next_fire(Rule(cron="0 9 * * *", tz="Asia/Kolkata"),
                     _utc("2024-05-01T00:00")) == _utc("2024-05-01T03:30")


def test_next_fire_is_strictly_after() -> None:
    at = _utc("2024-05-01T10:00")
    assert next_fire(Rule(cron="0 10 * * *"), at) == at + 24 * HOUR_US
    assert next_fire(Rule(cron="0 10 * * *"), at - 1) == at


def test_at_fires_once_and_only_in_the_future() -> None:
    rule = Rule(kind=ScheduleKind.AT, at_us=1_700_000_000_000_000)
    assert next_fire(rule, rule.at_us - 1) == rule.at_us
    assert next_fire(rule, rule.at_us) is None
    assert list(iter_fires(rule, 0)) == [rule.at_us]


# ------------------------------------------------------------------ validation

@pytest.mark.parametrize(("expr", "words"), [
    ("", "empty"), ("* * *", "3 fields"), ("0 0 1 1 * 2030", "6 fields"),
    ("61 * * * *", "invalid"), ("*/0 * * * *", "invalid"), ("a b c d e", "invalid"),
    ("0 0 31 2 *", "never fires"), ("@reboot", "unknown cron shortcut"),
    ("H * * * *", "hashed/random"), ("R 2 * * *", "hashed/random"),
])
def test_bad_cron_expressions_are_rejected_in_plain_words(expr: str, words: str) -> None:
    with pytest.raises(InvalidRequest, match=words):
        parse_cron(expr)


def test_good_cron_expressions_are_normalised() -> None:
    assert parse_cron("  0   2 * * MON-FRI ") == "0 2 * * MON-FRI"
    assert parse_cron("@Daily") == "@daily"
    assert parse_cron("0 0 L * *") == "0 0 L * *"
    assert parse_cron("0 4 * MAR,APR THU") == "0 4 * MAR,APR THU"  # names with H and R are fine


@pytest.mark.parametrize("tz", ["Mars/Olympus_Mons", "../../etc/passwd", "Not a zone", "/abs"])
def test_unknown_zones_are_rejected(tz: str) -> None:
    with pytest.raises(InvalidRequest, match="unknown time zone"):
        parse_zone(tz)
    with pytest.raises(InvalidRequest):
        validate(Rule(cron="0 2 * * *", tz=tz))


def test_at_without_a_time_is_rejected() -> None:
    with pytest.raises(InvalidRequest, match="needs a time"):
        validate(Rule(kind=ScheduleKind.AT, at_us=0))
    validate(Rule(kind=ScheduleKind.AT, at_us=1))
    assert parse_zone("") is UTC


# ------------------------------------------------------------------ properties

ZONES = ["UTC", "Europe/Paris", "America/New_York", "Australia/Lord_Howe", "America/Havana",
         "Pacific/Chatham", "Asia/Kolkata", "America/Santiago"]
# (zone, a DST change of 2024 in it) as UTC instants; windows start up to a day before.
CHANGES = [
    ("Europe/Paris", "2024-03-31T01:00"), ("Europe/Paris", "2024-10-27T01:00"),
    ("America/New_York", "2024-03-10T07:00"), ("America/New_York", "2024-11-03T06:00"),
    ("Australia/Lord_Howe", "2024-04-06T15:00"), ("Australia/Lord_Howe", "2024-10-05T15:30"),
    ("America/Havana", "2024-03-10T05:00"), ("America/Havana", "2024-11-03T05:00"),
    ("Pacific/Chatham", "2024-04-06T14:00"), ("Pacific/Chatham", "2024-09-28T14:00"),
    ("America/Santiago", "2024-04-07T03:00"), ("America/Santiago", "2024-09-08T04:00"),
    ("Asia/Kolkata", "2024-03-10T00:00"), ("UTC", "2024-03-10T00:00"),
]
MINUTES = ["*", "0", "30", "45", "*/15", "*/7", "0,30", "5-10", "59"]
HOURS = ["*", "0", "1", "2", "3", "1-3", "*/2", "2,3"]

crons = st.tuples(st.sampled_from(MINUTES), st.sampled_from(HOURS),
                  st.sampled_from(["*", "*", "L"]), st.sampled_from(["*", "0,3", "1-5"])
                  ).map(lambda f: f"{f[0]} {f[1]} {f[2]} * {f[3]}")
WINDOW_US = 48 * HOUR_US


def _wall_matches(cron: str) -> Callable[[datetime], bool]:
    """Whether a naive wall minute matches, from croniter walking each wall day without any zone."""
    days: dict[date, set[datetime]] = {}

    def matches(wall: datetime) -> bool:
        day = wall.date()
        if day not in days:
            midnight = datetime(day.year, day.month, day.day, tzinfo=UTC)
            walker = croniter(cron, midnight - timedelta(microseconds=1))
            found: set[datetime] = set()
            while (moment := walker.get_next(datetime)) < midnight + timedelta(days=1):
                found.add(moment.replace(tzinfo=None))
            days[day] = found
        return wall in days[day]

    return matches


def _brute_force(cron: str, zone: ZoneInfo, start_us: int, end_us: int) -> list[int]:
    """Independent oracle: test every UTC minute; first occurrences only; gaps fire at the jump."""
    matches = _wall_matches(cron)
    expected: list[int] = []
    latest_wall: datetime | None = None
    for minute_us in range(start_us - start_us % MINUTE_US, end_us + 1, MINUTE_US):
        local = datetime.fromtimestamp(minute_us / 1e6, zone)
        wall = local.replace(tzinfo=None)
        repeated = local.fold == 1 and local.replace(fold=0).utcoffset() != local.utcoffset()
        if latest_wall is not None and wall - latest_wall > timedelta(minutes=1):
            skipped = latest_wall + timedelta(minutes=1)  # wall minutes the jump skipped
            while skipped < wall:
                if matches(skipped):
                    expected.append(minute_us)
                    break
                skipped += timedelta(minutes=1)
        if not repeated and matches(wall):
            expected.append(minute_us)
        latest_wall = wall if latest_wall is None or wall > latest_wall else latest_wall
    return sorted({f for f in expected if start_us < f <= end_us})


@settings(max_examples=60, deadline=None)
@given(cron=crons, change=st.sampled_from(CHANGES),
       lead_min=st.integers(min_value=0, max_value=24 * 60))
def test_fires_match_a_brute_force_oracle_around_dst_changes(
    cron: str, change: tuple[str, str], lead_min: int,
) -> None:
    tz, change_at = change
    zone = ZoneInfo(tz)
    start = _utc(change_at) - lead_min * MINUTE_US
    end = start + WINDOW_US
    fires = list(itertools.takewhile(lambda f: f <= end, iter_fires(Rule(cron=cron, tz=tz), start)))
    assert fires == _brute_force(cron, zone, start, end)


@settings(max_examples=60, deadline=None)
@given(cron=crons, tz=st.sampled_from(ZONES), change=st.sampled_from(CHANGES),
       lead_min=st.integers(min_value=0, max_value=24 * 60))
def test_fire_properties(cron: str, tz: str, change: tuple[str, str], lead_min: int) -> None:
    zone = ZoneInfo(tz)
    start = _utc(change[1]) - lead_min * MINUTE_US
    fires = list(itertools.takewhile(lambda f: f <= start + WINDOW_US,
                                     iter_fires(Rule(cron=cron, tz=tz), start)))
    assert all(a < b for a, b in itertools.pairwise(fires))  # strictly increasing
    walls = [datetime.fromtimestamp(f / 1e6, zone).replace(tzinfo=None) for f in fires]
    assert len(set(walls)) == len(walls)  # never twice the same wall time on the same date
    for first, second, wall in zip(fires, fires[1:], walls, strict=False):
        # The gap allowed by the expression, from this wall time, plus at most 1 h of DST.
        naive_next = croniter(cron, wall.replace(tzinfo=UTC)).get_next(datetime)
        allowed_us = (naive_next.replace(tzinfo=None) - wall) // timedelta(microseconds=1)
        assert second - first <= allowed_us + HOUR_US
