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
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

from admin_console.errors import UsageError
from lotc.errors import InvalidRequest
from lotc.names import validate_name
from lotc.parse import durations
from lotc.parse.signals import parse_signal

_REWORDED = (("the following arguments are required", "missing"),
             ("unrecognized arguments", "unexpected words"),
             ("expected one argument", "needs a value"))
# One piece of a word, or the blanks between words, as shlex (POSIX mode) reads them:
# inside double quotes a backslash escapes only '"' and itself.
_BLANKS = " \t\r\n"
_PIECE = re.compile(r"""
      [ \t\r\n]+
    | [^ \t\r\n'"\\]+
    | '(?P<single>[^']*)(?P<single_end>')?
    | "(?P<double>(?:[^"\\]+|\\.)*)(?P<double_tail>\\)?(?P<double_end>")?
    | \\(?P<escaped>.)?
""", re.VERBOSE | re.DOTALL)
_DOUBLE_ESCAPE = re.compile(r'\\(["\\])')
SHOWN_CHARACTERS = 80  # of a line quoted in an error message


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
        raise UsageError(f"unterminated {quote} quote in {shown(text)}")
    bounds = zip([-1, *cuts], [*cuts, len(text)], strict=True)
    pieces = (text[start + 1:end].strip() for start, end in bounds)
    return [piece for piece in pieces if piece]


def last_command(text: str) -> str:
    """The command being typed at the end of `text`: what follows its last ';' outside quotes."""
    cuts, _ = _unquoted(text, ";")
    return text[cuts[-1] + 1:] if cuts else text


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

    The same words as `shlex.split(line)` (a test proves it), in linear time:
    shlex grows each word one character at a time, so a 1 MB argument took
    15 s. `#` is an ordinary character here (`--env COLOR=#fff`); scripts
    drop whole comment lines before this.
    """
    scanned = scan(line)
    if scanned.open_quote:
        raise UsageError(f"cannot split {shown(line)}: no closing quotation "
                         f"({scanned.open_quote})")
    if scanned.dangling_escape:
        raise UsageError(f"cannot split {shown(line)}: nothing after the last backslash")
    return scanned.words


@dataclass(frozen=True)
class Scanned:
    """What `scan` found: the words, and how the text ends."""

    words: list[str]
    last_start: int | None  # where the last word starts, None if the text ends outside one
    open_quote: str = ""  # the quote left open at the end, if any
    dangling_escape: bool = False  # the text ends with a lone backslash


def scan(text: str) -> Scanned:
    """Split `text` into words like a POSIX shell (shlex's rules), tolerating an open end.

    Each regex match is one piece of a word (or the blanks between words),
    so the work is linear; the console's completion uses it on partial lines.
    """
    found: list[str] = []
    parts: list[str] = []
    start: int | None = None
    quote, dangling = "", False
    for piece in _PIECE.finditer(text):
        first = piece.group()[0]
        if first in _BLANKS:
            if start is not None:
                found.append("".join(parts))
            parts, start = [], None
            continue
        start = piece.start() if start is None else start
        if first == "'":
            parts.append(piece["single"])
            quote = "" if piece["single_end"] else "'"
        elif first == '"':
            parts.append(_DOUBLE_ESCAPE.sub(r"\1", piece["double"]))
            quote = "" if piece["double_end"] else '"'
            dangling = piece["double_tail"] is not None
        elif first == "\\":
            parts.append(piece["escaped"] or "")
            dangling = piece["escaped"] is None
        else:
            parts.append(piece.group())
    if start is not None:
        found.append("".join(parts))
    return Scanned(found, start, quote, dangling)


def shown(text: str, limit: int = SHOWN_CHARACTERS, *, quoted: bool = True) -> str:
    """`text` for an error message, cut in the middle when long (a pasted 1 MB line)."""
    form = repr if quoted else str
    if len(text) <= limit:
        return form(text)
    half = limit // 2
    return f"{form(text[:half])}...{form(text[-half:])} ({len(text)} characters)"


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
    """`90`, `30s`, `10m`, `2h`, `1d`, `500ms` -> seconds (lotc.parse.durations)."""
    try:
        return durations.parse_duration(text)
    except InvalidRequest:
        raise UsageError(f"bad duration {shown(text)}: {durations.DURATION_HELP}") from None


def parse_env(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise UsageError(f"bad --env {text!r}: expected KEY=VALUE")
    return key, value


def signal_name(text: str) -> str:
    """`hup`, `SIGHUP` or `1` -> `SIGHUP` (lotc.parse.signals); UsageError otherwise."""
    try:
        return parse_signal(text).name
    except InvalidRequest as exc:
        raise UsageError(str(exc)) from None


def check_name(kind: str, value: str) -> str:
    try:
        return validate_name(kind, value)
    except InvalidRequest as exc:
        raise UsageError(str(exc)) from None
