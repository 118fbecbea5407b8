"""Values the console sends stay inside what the wire and LOTC accept (issue 14, item 16)."""
from __future__ import annotations

import pytest

from admin_console.bounds import MAX_SPAN_S, check_fits, wire_max
from admin_console.commands import build_registry
from admin_console.errors import UsageError
from admin_console.registry import parse_line
from lotc.limits import MIN_LIVENESS_MS
from protocol.codec import encode
from protocol.messages import Message, ProcStart, ProcTerminate, QueryLogs
from protocol.spec import MessageType

REGISTRY = build_registry()
HUGE = "9" * 400  # float() makes it infinity


def parsed(line: str) -> object:
    invocation = parse_line(REGISTRY, line)
    assert invocation is not None
    return invocation.parsed


@pytest.mark.parametrize(("line", "words"), [
    ("start n1 b --liveness 99999999999999 -- x", "--liveness '99999999999999' is too long"),
    (f"start n1 b --liveness {HUGE} -- x", "is too long: at most 49d17h"),
    ("start n1 b --liveness 0.0001 -- x", "at least 100ms (0 turns the watchdog off)"),
    ("start n1 b --liveness 99ms -- x", "is too short"),
    ("start n1 b --grace 0.0001 -- x", "at least 1ms (0 keeps the default)"),
    ("terminate n1 p --grace 50d", "--grace '50d' is too long"),
    ("stats n1 --since 99999999999d", "--since '99999999999d' is too long: at most 36500d"),
    (f"events --since {HUGE}", "is too long"),
    ("events -n 4294967296", "-n '4294967296' is too large: at most 4294967295"),
    ("logs n1 p -n -1", "-n must not be negative"),
    ("schedule n1 p stop at in 36501d", "the delay '36501d' is too long"),
    ("ps " + "a" * 70_000, "agent name is 70000 characters long; the limit is 64"),
    ("upload " + "n*" * 200 + " b /tmp", "agent glob is 400 characters long"),
    ("start n1 b --cwd " + "é" * 40_000 + " -- x", "--cwd is 80000 bytes long: at most 65535"),
    ("start n1 b --env K=" + "v" * 5_000_000 + " -- x", "a request may have at most 4194304"),
])
def test_out_of_range_values_are_usage_errors(line: str, words: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_line(REGISTRY, line)
    assert words in str(info.value)
    assert "usage:" in str(info.value) and len(str(info.value)) < 600


def test_the_edges_are_accepted_and_zero_keeps_its_meaning() -> None:
    start = parsed(f"start n1 b --liveness {MIN_LIVENESS_MS}ms --grace 1ms -- x")
    assert isinstance(start, ProcStart)
    assert (start.liveness_ms, start.grace_ms) == (MIN_LIVENESS_MS, 1)
    start = parsed("start n1 b --liveness 0 -- x")
    assert isinstance(start, ProcStart) and start.liveness_ms == 0  # no watchdog
    longest = wire_max(MessageType.PROC_START, "liveness_ms")
    start = parsed(f"start n1 b --liveness {longest}ms -- x")
    assert isinstance(start, ProcStart) and start.liveness_ms == longest
    terminate = parsed(f"terminate n1 p --grace {longest / 1000}")
    assert isinstance(terminate, ProcTerminate) and terminate.grace_ms == longest
    logs = parsed("logs n1 p -n 4294967295")
    assert isinstance(logs.query, QueryLogs) and logs.query.lines == 4294967295
    assert parsed(f"stats n1 --since {MAX_SPAN_S}").since_s == MAX_SPAN_S  # type: ignore[attr-defined]


@pytest.mark.parametrize("line", [
    "start all web -- x", "stop web-* p", "kill n1 p --signal HUP", "ps", "bundles n[12]",
    "events -n 0", "schedules all", "schedule n1 p start cron '0 2 * * *'",
])
def test_what_parses_encodes(line: str) -> None:
    body = parsed(line)
    check_fits(body)
    if isinstance(body, Message):
        assert encode(body)


def test_wire_max_reads_the_spec() -> None:
    assert wire_max(MessageType.PROC_START, "liveness_ms") == 2**32 - 1
    assert wire_max(MessageType.PROC_START, "target") == 2**16 - 1  # Str: bytes
    assert wire_max(MessageType.QUERY_STATS, "since_us") == 2**63 - 1
    with pytest.raises(KeyError):
        wire_max(MessageType.PROC_START, "nope")
