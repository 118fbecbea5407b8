"""Turning what the user typed into words and values, with errors in plain words.

Used by every command definition: splitting a `-c` string into commands,
a command into shell-like words, and the small value syntaxes shared by
several commands (durations such as `10m`, `K=V`, signal names, names).
Nothing here raises SystemExit: argparse's habit of exiting is replaced by
UsageError carrying the command's usage line.
"""
from __future__ import annotations

import argparse
import re
import shlex
import signal as signals
from collections.abc import Sequence
from typing import Any, NoReturn

from admin_console.errors import UsageError
from lotc.errors import InvalidRequest
from lotc.names import validate_name

_DURATION = re.compile(r"(?P<number>\d+(?:\.\d+)?)(?P<unit>ms|s|m|h|d|w)?")
_REWORDED = (("the following arguments are required", "missing"),
             ("unrecognized arguments", "unexpected words"),
             ("expected one argument", "needs a value"))
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


def _unquoted(text: str, wanted: str) -> tuple[list[int], str | None]:
    """Indexes of `wanted` characters outside quotes and escapes, and the quote left open."""
    found: list[int] = []
    quote: str | None = None
    escaped = False
    for index, char in enumerate(text):
        if escaped:
            escaped = False
        elif char == "\\" and quote != "'":
            escaped = True
        elif quote is not None:
            if char == quote:
                quote = None
        elif char in "'\"":
            quote = char
        elif char in wanted:
            found.append(index)
    return found, quote


def split_commands(text: str) -> list[str]:
    """Split `a; b 'c;d'; e` on semicolons outside quotes; blank commands are dropped.

    Quotes and backslashes are kept in the pieces, so each piece is then
    tokenized by `words` exactly as if it had been typed alone.
    """
    cuts, quote = _unquoted(text, ";")
    if quote is not None:
        raise UsageError(f"unterminated {quote} quote in {text!r}")
    bounds = zip([-1, *cuts], [*cuts, len(text)], strict=True)
    pieces = (text[start + 1:end].strip() for start, end in bounds)
    return [piece for piece in pieces if piece]


def strip_comment(line: str) -> str:
    """Drop a `# comment`: a '#' outside quotes that starts a word, as in the shell.

    A '#' inside a word (`--env COLOR=#fff`) or in quotes is kept.
    """
    hashes, _ = _unquoted(line, "#")
    for index in hashes:
        if index == 0 or line[index - 1].isspace():
            return line[:index].rstrip()
    return line


def words(line: str) -> list[str]:
    """Shell-like words of one command line (quotes group words, backslash escapes).

    `#` is an ordinary character here (`--env COLOR=#fff`); scripts drop
    whole comment lines before this.
    """
    try:
        return shlex.split(line)
    except ValueError as exc:  # shlex says "No closing quotation" / "No escaped character"
        raise UsageError(f"cannot split {line!r}: {str(exc).lower()}") from None


class CommandParser(argparse.ArgumentParser):
    """argparse for one console command: errors raise UsageError instead of exiting."""

    def __init__(self, prog: str, usage: str, **kwargs: Any) -> None:
        # subparsers (token create|revoke) are built by argparse with the same class
        kwargs.setdefault("add_help", False)
        kwargs.setdefault("allow_abbrev", False)
        kwargs.setdefault("exit_on_error", False)
        super().__init__(prog=prog, usage=usage, **kwargs)
        self.usage_line = usage

    def error(self, message: str) -> NoReturn:
        for argparse_words, plain in _REWORDED:
            message = message.replace(argparse_words, plain)
        raise UsageError(message, self.usage_line)

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        raise UsageError(message or "invalid arguments", self.usage_line)

    def parse(self, argv: Sequence[str]) -> argparse.Namespace:
        try:
            return self.parse_args(list(argv))
        except argparse.ArgumentError as exc:
            self.error(str(exc))
        except UsageError as exc:  # raised by a type= function: add the usage line
            if exc.usage:
                raise
            raise UsageError(str(exc), self.usage_line) from None


def parse_duration(text: str) -> float:
    """`90`, `30s`, `10m`, `2h`, `1d`, `500ms` -> seconds."""
    match = _DURATION.fullmatch(text.strip().lower())
    if match is None:
        raise UsageError(f"bad duration {text!r}: use a number with s, m, h or d, e.g. 10m")
    return float(match["number"]) * _UNIT_SECONDS[match["unit"] or "s"]


def to_ms(seconds: float) -> int:
    return round(seconds * 1000)


def parse_env(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise UsageError(f"bad --env {text!r}: expected KEY=VALUE")
    return key, value


def signal_name(text: str) -> str:
    """`hup`, `SIGHUP` or `1` -> `SIGHUP`; UsageError for anything else."""
    upper = text.strip().upper()
    try:
        if upper.isdigit():
            return signals.Signals(int(upper)).name
        return signals.Signals[upper if upper.startswith("SIG") else "SIG" + upper].name
    except (KeyError, ValueError):
        raise UsageError(f"unknown signal {text!r}: use a name such as TERM, HUP or USR1") \
            from None


def check_name(kind: str, value: str) -> str:
    try:
        return validate_name(kind, value)
    except InvalidRequest as exc:
        raise UsageError(str(exc)) from None


def non_negative(kind: str, value: int) -> int:
    if value < 0:
        raise UsageError(f"{kind} must not be negative")
    return value
