"""The shared parsers in lotc.parse (and the shared sets and helpers beside them), each
table-driven, plus a guard that the copies they replaced do not come back."""
from __future__ import annotations

import ast
import signal
from pathlib import Path

import pytest

from lotc.errors import InvalidRequest
from lotc.exc_groups import leaves, lone_error
from lotc.parse.durations import parse_duration
from lotc.parse.signals import parse_signal, signal_word
from lotc.process_states import ALIVE, RUNNABLE
from protocol.enums import ProcessState as S

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(("text", "expected"), [
    ("SIGKILL", signal.SIGKILL), ("kill", signal.SIGKILL), ("term", signal.SIGTERM),
    (" Hup ", signal.SIGHUP), ("sigusr1", signal.SIGUSR1), ("10", signal.SIGUSR1),
    ("9", signal.SIGKILL), (15, signal.SIGTERM),
])
def test_parse_signal_accepts(text: str | int, expected: signal.Signals) -> None:
    assert parse_signal(text) is expected


@pytest.mark.parametrize("text", ["", "SIGNOPE", "999", "0", "KILL9", "SIG_DFL", "-9", "SIG"])
def test_parse_signal_refuses_in_plain_words(text: str) -> None:
    with pytest.raises(InvalidRequest, match="unknown signal .*such as SIGTERM"):
        parse_signal(text)


@pytest.mark.parametrize(("number", "word"), [(9, "SIGKILL"), (1, "SIGHUP"), (999, "signal 999")])
def test_signal_word(number: int, word: str) -> None:
    assert signal_word(number) == word


@pytest.mark.parametrize(("text", "seconds"), [
    ("90", 90.0), ("30s", 30.0), ("10m", 600.0), ("2h", 7200.0), ("1d", 86400.0),
    ("1w", 604800.0), ("500ms", 0.5), ("1.5m", 90.0), (" 10M ", 600.0), ("0", 0.0),
])
def test_parse_duration_accepts(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "m", "10x", "-5s", "1e3", "10 m", "5mss", "x" * 10_000])
def test_parse_duration_refuses_without_echoing(text: str) -> None:
    with pytest.raises(InvalidRequest, match="bad duration") as caught:
        parse_duration(text)
    assert len(str(caught.value)) < 100  # a pasted huge input is not echoed back


def test_alive_states() -> None:
    assert RUNNABLE == {S.STARTING, S.RUNNING, S.BACKOFF}
    assert ALIVE == {S.STARTING, S.RUNNING, S.STOPPED, S.BACKOFF}
    assert not ALIVE & {S.EXITED, S.FAILED}


def test_lone_error_unwraps_single_member_groups_only() -> None:
    inner = KeyError("x")
    assert lone_error(ExceptionGroup("a", [ExceptionGroup("b", [inner])])) is inner
    assert lone_error(inner) is inner
    pair = ExceptionGroup("two", [KeyError("1"), ValueError("2")])
    assert lone_error(pair) is pair
    assert [type(e) for e in leaves(ExceptionGroup("g", [pair, inner]))] == \
        [KeyError, ValueError, KeyError]


def _python_files(*tops: str) -> list[Path]:
    return [p for top in tops for p in sorted((ROOT / top).rglob("*.py"))]


def _imported_modules(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def test_server_and_console_import_nothing_from_the_agent() -> None:
    offenders = {str(p.relative_to(ROOT)): sorted(m for m in _imported_modules(p)
                                                  if m.startswith("lotc.agent"))
                 for p in _python_files("lotc/server", "admin_console")}
    assert {k: v for k, v in offenders.items() if v} == {}


# Tell-tale lines of the copies lotc.parse, lotc.process_states and lotc.exc_groups replaced.
COPY_MARKS = {
    '"SIG" +': "lotc/parse/signals.py",
    "Signals[": "lotc/parse/signals.py",
    "len(exc.exceptions) == 1": "lotc/exc_groups.py",
    "len(group.exceptions) == 1": "lotc/exc_groups.py",
    "(?P<unit>": "lotc/parse/durations.py",
    "ZoneInfo(": "lotc/parse/crontimes.py",
    "croniter(": "lotc/parse/crontimes.py",
    "ProcessState.STOPPED,": "lotc/process_states.py",
}


def test_no_copies_of_the_shared_rules() -> None:
    found = sorted(f"{p.relative_to(ROOT)}: {mark!r} (belongs in {home})"
                   for p in _python_files("lotc", "admin_console")
                   for mark, home in COPY_MARKS.items()
                   if mark in p.read_text() and p.relative_to(ROOT).as_posix() != home)
    assert found == []
