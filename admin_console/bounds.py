"""Values the console sends, kept inside what the wire and LOTC accept.

Checked while a line is parsed, so an out-of-range value is a usage error
(exit status 2) before anything is sent, worded with the option the user
typed ("--liveness 99999999999999 is too long: at most 49d17h") rather than
the encoder's "'I' format requires 0 <= number <= 4294967295". The largest
values come from the field widths in protocol/spec.py (a table that
protocol/fastgen.py generates into protocol/_fastcodec.py, so the console needs
no construct at run time), so they cannot drift from the wire; the smallest ones are LOTC's
own rules (lotc.limits), which the server checks again for any client.
`check_fits` is the last guard for what no option check covers (a command
line of several MB): the whole message must encode and fit in one frame.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from admin_console.errors import UsageError
from admin_console.parsing import parse_duration, shown
from admin_console.render import human_duration
from lotc.errors import InvalidRequest
from lotc.selectors import parse_selector
from protocol.codec import EncodeError, encode, wire_largest
from protocol.message_types import DEFAULT_MAX_BODY, HEADER_SIZE, MessageType
from protocol.messages import Message

# How far back (--since) or ahead (at +DELAY) a time may be: beyond a century is a typo.
MAX_SPAN_S = 100 * 365 * 86400


def wire_max(message_type: MessageType, field: str) -> int:
    """The largest value (or length) the wire carries in this field of this message."""
    return wire_largest(message_type, field)


def _said(ms: float) -> str:
    return f"{ms:g}ms" if ms < 1000 else human_duration(ms / 1000)


def milliseconds(option: str, message_type: MessageType, field: str, *,
                 zero_means: str, minimum_ms: int = 1) -> Callable[[str], int]:
    """An argparse type: a duration (`10s`, `500ms`) -> whole milliseconds for `field`.

    0 keeps its meaning (`zero_means`, said in the error); anything else must
    be at least `minimum_ms`, so a tiny value never rounds to that 0.
    """
    largest = wire_max(message_type, field)

    def parse(text: str) -> int:
        ms = parse_duration(text) * 1000
        if ms == 0:
            return 0
        if ms < minimum_ms:
            raise UsageError(f"{option} {shown(text)} is too short: at least {_said(minimum_ms)} "
                             f"(0 {zero_means})")
        if ms > largest:
            raise UsageError(f"{option} {shown(text)} is too long: at most {_said(largest)}")
        return round(ms)

    return parse


def span(option: str) -> Callable[[str], float]:
    """An argparse type: a duration in seconds reaching back or ahead, at most a century."""

    def parse(text: str) -> float:
        seconds = parse_duration(text)
        if seconds > MAX_SPAN_S:
            raise UsageError(f"{option} {shown(text)} is too long: at most {MAX_SPAN_S // 86400}d")
        return seconds

    return parse


def count(option: str, message_type: MessageType, field: str) -> Callable[[str], int]:
    """An argparse type: a whole number from 0 to what `field` carries."""
    largest = wire_max(message_type, field)

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise UsageError(f"{option} {shown(text)} is not a whole number") from None
        if value < 0:
            raise UsageError(f"{option} must not be negative")
        if value > largest:
            raise UsageError(f"{option} {shown(text)} is too large: at most {largest}")
        return value

    return parse


def utf8_text(option: str, message_type: MessageType, field: str) -> Callable[[str], str]:
    """An argparse type: a string that fits `field` once UTF-8 encoded."""
    largest = wire_max(message_type, field)

    def parse(value: str) -> str:
        size = len(value.encode("utf-8", "surrogatepass"))
        if size > largest:
            raise UsageError(f"{option} is {size} bytes long: at most {largest}")
        return value

    return parse


def agent_selector(value: str) -> str:
    """An argparse type for AGENT: a selector (lotc/selectors.py), checked before it is sent.

    Empty stays empty: a listing's "every agent" (the server refuses it where an agent
    is required)."""
    value = value.strip()
    if not value:
        return value
    try:
        parse_selector(value)
    except InvalidRequest as exc:
        raise UsageError(str(exc)) from None
    return value


def check_fits(parsed: Any) -> None:
    """Refuse a parsed message that cannot be encoded or is bigger than a frame may be."""
    if not isinstance(parsed, Message):
        return
    try:
        size = len(encode(parsed)) - HEADER_SIZE
    except EncodeError as exc:
        raise UsageError(f"a value is out of range: {exc}") from None
    if size > DEFAULT_MAX_BODY:
        raise UsageError(f"this command is {size} bytes on the wire; a request may have at "
                         f"most {DEFAULT_MAX_BODY} ({math.floor(DEFAULT_MAX_BODY / 2**20)} MiB)")
