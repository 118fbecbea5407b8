"""Splitting console lines into words: shlex's rules, in linear time (issue 14, item 15)."""
from __future__ import annotations

import shlex
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from admin_console.completion import typed
from admin_console.errors import UsageError
from admin_console.parsing import scan, shown, split_commands, strip_comment, words

# The characters that matter to the rules, plus a few that do not.
LINE_TEXT = st.text(alphabet=" \t\n'\"\\;#ab=\x0b", max_size=40)
BIG = 2_000_000  # characters of one argument: shlex took 15 s for 1,000,000
SPLIT_DEADLINE_S = 10.0  # linear: well under a second here, even on a loaded machine


def shlex_words(line: str) -> list[str] | None:
    try:
        return shlex.split(line)
    except ValueError:
        return None


@settings(max_examples=3000, deadline=None)
@given(LINE_TEXT)
def test_words_are_shlex_words(line: str) -> None:
    expected = shlex_words(line)
    if expected is None:
        with pytest.raises(UsageError, match="cannot split"):
            words(line)
    else:
        assert words(line) == expected


@settings(max_examples=1000, deadline=None)
@given(LINE_TEXT)
def test_a_partial_line_ends_in_the_word_being_typed(line: str) -> None:
    scanned = scan(line)
    if scanned.last_start is not None:
        # the last word, completed with the quote left open, is the word shlex sees
        closed = line + scanned.open_quote
        if not scanned.dangling_escape and shlex_words(closed) is not None:
            assert shlex_words(closed) == scanned.words


@pytest.mark.parametrize("argument", [
    "x" * BIG,  # one plain word
    "'" + "x" * BIG + "'",  # quoted
    '"' + 'a\\"' * (BIG // 3) + '"',  # escapes inside double quotes
    "\\x" * (BIG // 2),  # escapes outside quotes
    "a " * (BIG // 2),  # many words
])
def test_a_huge_line_splits_in_linear_time(argument: str) -> None:
    line = f"start all web -- echo {argument}"
    began = time.monotonic()
    assert split_commands(line) == [line.strip()]
    assert strip_comment(line) == line
    assert words(line)[:5] == ["start", "all", "web", "--", "echo"]
    assert typed(line).words[:2] == ["start", "all"]
    assert time.monotonic() - began < SPLIT_DEADLINE_S


def test_typed_words_follow_the_last_command_and_an_open_quote() -> None:
    line = typed('agents; logs node-1 "we b')
    assert (line.words, line.current, line.raw_length) == (["logs", "node-1"], "we b", 5)
    assert typed("ps ").current == ""
    assert typed('kill n "a\\"b').current == 'a"b'  # as the command will read it


def test_errors_quote_a_long_line_shortly() -> None:
    with pytest.raises(UsageError) as info:
        words("echo '" + "x" * 1_000_000)
    assert len(str(info.value)) < 300
    assert "1000006 characters" in str(info.value)
    assert shown("short") == "'short'" and shown("short", quoted=False) == "short"
    assert shown("y" * 100_000, quoted=False) == f"{'y' * 40}...{'y' * 40} (100000 characters)"
