"""`schedule`, `schedules`, `unschedule`: parsing (checked before sending) and rendering."""
from __future__ import annotations

import json
import time
from typing import Any

import pytest

from admin_console.commands import build_registry
from admin_console.commands.listing import Listing
from admin_console.commands.schedules import ScheduleCommand, parse_time, when_text
from admin_console.errors import UsageError
from admin_console.registry import parse_line
from protocol.enums import Action, ScheduleKind
from protocol.errors import ErrorCode
from protocol.messages import (
    AgentResult,
    ListSchedules,
    ScheduleClear,
    ScheduleEntry,
    ScheduleSet,
)

REGISTRY = build_registry()
NOW = 1_700_000_000_000_000  # 2023-11-14T22:13:20Z
SECOND = 1_000_000
COMMAND = ScheduleCommand()


def parsed(line: str) -> Any:
    invocation = parse_line(REGISTRY, line)
    assert invocation is not None
    return invocation.parsed


def schedule_at(words: str, now: int = NOW) -> ScheduleSet:
    """`schedule ...` parsed as if the console's clock read `now`."""
    return COMMAND.parse_at_time(words.split(), now)


def usage_error(line: str) -> str:
    with pytest.raises(UsageError) as info:
        parse_line(REGISTRY, line)
    assert info.value.usage, "every usage error carries the usage line"
    return str(info.value)


# ---------------------------------------------------------------- schedule: good input


def test_cron_in_a_zone() -> None:
    assert parsed('schedule node-1 nightly start cron "0 2 * * *" --tz Europe/Paris') == \
        ScheduleSet(target="node-1", schedule=ScheduleEntry(
            id=0, agent="", process="nightly", action=Action.START, kind=ScheduleKind.CRON,
            cron="0 2 * * *", tz="Europe/Paris"))


def test_cron_unquoted_words_are_joined_and_normalised() -> None:
    entry = parsed("schedule all demo stop cron 0  18 * * mon-fri").schedule
    assert (entry.cron, entry.tz, entry.action) == ("0 18 * * mon-fri", "", Action.STOP)
    assert parsed("schedule n1 web restart cron @DAILY").schedule.cron == "@daily"


@pytest.mark.parametrize("action", ["start", "stop", "resume", "terminate", "kill", "restart",
                                    "STOP"])
def test_every_action(action: str) -> None:
    entry = parsed(f'schedule n1 web {action} cron "* * * * *"').schedule
    assert entry.action == Action[action.upper()]
    assert entry.signal == ""  # kill without --signal: SIGKILL


def test_kill_with_a_signal() -> None:
    entry = schedule_at("n1 web kill at +30s --signal hup").schedule
    assert (entry.action, entry.signal, entry.at_us) == (Action.KILL, "SIGHUP", NOW + 30 * SECOND)


@pytest.mark.parametrize(("words", "at_us"), [
    ("2023-11-15T02:00:00Z", NOW + (3 * 3600 + 46 * 60 + 40) * SECOND),
    ("2023-11-15T03:00:00+01:00", NOW + (3 * 3600 + 46 * 60 + 40) * SECOND),
    ("2023-11-14T22:13:20.250Z", NOW + SECOND // 4),
    ("+30s", NOW + 30 * SECOND),
    ("+1.5m", NOW + 90 * SECOND),
    ("in 10m", NOW + 600 * SECOND),
    ("IN 2h", NOW + 7200 * SECOND),
])
def test_at_times(words: str, at_us: int) -> None:
    assert parse_time(words.split(), NOW) == at_us
    entry = schedule_at(f"n1 web stop at {words}").schedule
    assert (entry.kind, entry.at_us, entry.cron, entry.tz) == (ScheduleKind.AT, at_us, "", "")


def test_relative_time_uses_the_console_clock() -> None:
    before = time.time_ns() // 1000
    entry = parsed("schedule n1 web stop at +10s").schedule
    after = time.time_ns() // 1000
    assert before + 10 * SECOND <= entry.at_us <= after + 10 * SECOND


@pytest.mark.parametrize("when", ["in 10m", "+10m", "at in 10m", "at +10m"])
def test_every_delay_spelling_the_help_names_parses(when: str) -> None:
    """Issue 14 item 3: `help schedule` and the parser agree on `in 10m` / `+10m`."""
    help_text = " ".join(REGISTRY.get("schedule").help.split())
    assert all(spelling in help_text for spelling in ("in DELAY", "+DELAY", "at in 10m",
                                                      "at +10m"))
    entry = schedule_at(f"n1 web stop {when}").schedule
    assert (entry.kind, entry.at_us) == (ScheduleKind.AT, NOW + 600 * SECOND)


def test_every_example_in_the_help_parses() -> None:
    for name in ("schedule", "stop", "kill", "terminate", "start"):
        examples = REGISTRY.get(name).help.split("Examples:")[1].strip().splitlines()
        for example in examples:
            assert parse_line(REGISTRY, example.strip()) is not None, example


# ---------------------------------------------------------------- schedule: bad input


@pytest.mark.parametrize(("line", "words"), [
    ("schedule", "missing: agent, process, action"),
    ("schedule n1 web", "missing: action"),
    ("schedule n1 web stop", "missing when: 'cron \"EXPR\"', 'at TIME' or 'in DELAY'"),
    ("schedule n1 web jump cron '* * * * *'", "unknown action 'jump': use one of start, stop"),
    ("schedule n1 web stop every 5m",
     "expected 'cron', 'at' or 'in' after the action, not 'every'"),
    ("schedule n1 web stop cron", "missing the cron expression"),
    ("schedule n1 web stop cron '61 * * * *'", "invalid cron expression '61 * * * *'"),
    ("schedule n1 web stop cron '* * * *'", "has 4 fields: expected 5 fields"),
    ("schedule n1 web stop cron '0 0 30 2 *'", "never fires"),
    ("schedule n1 web stop cron '* * * * * *'", "has 6 fields"),
    ("schedule n1 web stop cron @reboot", "unknown cron shortcut '@reboot'"),
    ("schedule n1 web stop cron 'H * * * *'", "hashed/random"),
    ("schedule n1 web stop cron '* * * * *' --tz Mars/Base", "unknown time zone 'Mars/Base'"),
    ("schedule n1 web stop at", "missing the time after 'at'"),
    ("schedule n1 web stop at tomorrow", "cannot read the time 'tomorrow'"),
    ("schedule n1 web stop at in 5 minutes", "cannot read the time 'in 5 minutes'"),
    ("schedule n1 web stop at 2030-01-01T00:00:00", "has no zone: add Z for UTC"),
    ("schedule n1 web stop at 2030-01-01", "has no zone"),
    ("schedule n1 web stop at 2001-01-01T00:00:00Z", "is in the past"),
    ("schedule n1 web stop at +0s", "must be more than zero"),
    ("schedule n1 web stop at +5x", "bad duration '5x'"),
    ("schedule n1 web stop at +5s --tz Europe/Paris", "--tz goes with cron only"),
    ("schedule n1 web stop at +5s --signal HUP", "--signal goes with the kill action only"),
    ("schedule n1 web kill at +5s --signal BOGUS", "unknown signal 'BOGUS'"),
    ("schedule n1 'bad name' stop at +5s", "invalid process name 'bad name'"),
])
def test_bad_schedules_are_refused_in_plain_words(line: str, words: str) -> None:
    message = usage_error(line)
    assert words in message
    assert "usage: schedule AGENT P ACTION" in message


def test_a_time_just_past_on_the_console_clock_is_refused() -> None:
    with pytest.raises(UsageError, match="in the past"):
        parse_time(["2023-11-14T22:13:20Z"], NOW)  # exactly now
    assert parse_time(["2023-11-14T22:13:20.001Z"], NOW) == NOW + 1000


# ---------------------------------------------------------------- schedules, unschedule


def test_schedules_and_unschedule_parse() -> None:
    assert parsed("schedules") == ListSchedules(pattern="")
    assert parsed("schedules web-*") == ListSchedules(pattern="web-*")
    assert parsed("unschedule 7") == ScheduleClear(target="", id=7)
    assert parsed("unschedule #7") == ScheduleClear(target="", id=7)


@pytest.mark.parametrize(("line", "words"), [
    ("unschedule", "missing: id"),
    ("unschedule x", "bad schedule id 'x': use the number shown by 'schedules'"),
    ("unschedule 0", "bad schedule id '0'"),
    ("unschedule -3", "bad schedule id"),
    (f"unschedule {2**64}", "bad schedule id"),
    ("unschedule 1 2", "unexpected words"),
])
def test_bad_unschedule(line: str, words: str) -> None:
    assert words in usage_error(line)


def test_help_has_examples() -> None:
    for name in ("schedule", "schedules", "unschedule"):
        command = REGISTRY.get(name)
        assert "Examples:" in command.help and command.summary
    assert "--tz" in REGISTRY.get("schedule").usage


# ---------------------------------------------------------------- rendering

CRON = ScheduleEntry(id=3, agent="node-1", process="nightly", action=Action.START,
                     kind=ScheduleKind.CRON, cron="0 2 * * *", tz="Europe/Paris",
                     next_fire_us=NOW + 3600 * SECOND, last_fire_us=NOW - 86400 * SECOND)
AT = ScheduleEntry(id=12, agent="node-2", process="web", action=Action.KILL, signal="SIGHUP",
                   kind=ScheduleKind.AT, at_us=NOW - 5 * SECOND, next_fire_us=0,
                   last_fire_us=NOW - 5 * SECOND)
PLAIN = ScheduleEntry(id=4, agent="node-1", process="web", action=Action.STOP,
                      kind=ScheduleKind.CRON, cron="*/5 * * * *", next_fire_us=NOW + 90 * SECOND)


def test_schedules_table() -> None:
    text = REGISTRY.get("schedules").render(Listing((AT, CRON, PLAIN), NOW), False)
    assert text.splitlines() == [
        ("ID  AGENT   PROCESS  ACTION       WHEN                      "
        "NEXT                             LAST"),
        (" 3  node-1  nightly  start        0 2 * * * (Europe/Paris)  "
        "in 1h (2023-11-14 23:13:20Z)     1d ago"),
        (" 4  node-1  web      stop         */5 * * * * (UTC)         "
        "in 1m30s (2023-11-14 22:14:50Z)  never"),
        ("12  node-2  web      kill SIGHUP  at 2023-11-14T22:13:15Z   "
        "-                                5s ago"),
    ]
    assert REGISTRY.get("schedules").render(Listing((), NOW), False) == "no schedules"


def test_when_text_keeps_milliseconds_only_when_there_are_some() -> None:
    assert when_text(ScheduleEntry(kind=ScheduleKind.AT, at_us=NOW + 250_000)) == \
        "at 2023-11-14T22:13:20.250Z"
    assert when_text(ScheduleEntry(kind=ScheduleKind.AT, at_us=NOW)) == "at 2023-11-14T22:13:20Z"


def test_schedules_json() -> None:
    document = json.loads(REGISTRY.get("schedules").render(Listing((CRON, AT), NOW), True))
    cron, at = document["schedules"]
    assert cron["id"] == 3 and cron["action"] == "START" and cron["kind"] == "CRON"
    assert cron["cron"] == "0 2 * * *" and cron["tz"] == "Europe/Paris"
    assert cron["next_fire"] == "2023-11-14T23:13:20.000Z"
    assert cron["next_fire_us"] == NOW + 3600 * SECOND
    assert cron["at"] is None  # 0: no time
    assert at["signal"] == "SIGHUP" and at["at"] == "2023-11-14T22:13:15.000Z"
    assert at["next_fire"] is None


def test_schedule_results_render_like_every_command_acting_on_agents() -> None:
    results = (AgentResult(agent="node-1", code=ErrorCode.OK, message="schedule 7 set"),
               AgentResult(agent="node-2", code=ErrorCode.OK,
                           message="schedule 8 recorded; agent offline"))
    command = REGISTRY.get("schedule")
    assert command.render(results, False).splitlines() == [
        "node-1  ok  schedule 7 set", "node-2  ok  schedule 8 recorded; agent offline"]
    assert command.succeeded(results)
    document = json.loads(command.render(results, True))
    assert document["ok"] is True and document["results"][0]["message"] == "schedule 7 set"
    failed = (AgentResult(agent="node-1", code=ErrorCode.UNKNOWN_PROCESS, message="no process"),)
    assert not REGISTRY.get("unschedule").succeeded(failed)
