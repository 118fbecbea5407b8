"""Process options: the one table of keys PROC_START_OPTIONS may carry.

An option travels as text (KeyValue) in its canonical form, so the console,
the server (which stores it in the desired state) and the agent (which
applies it to its ProcessSpec) all read it through the same parser here. A
later option (user, memory, cpus...) is a new row of OPTIONS, not a new
message. Pure: no I/O.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from lotc.errors import InvalidRequest

__all__ = ["OPTIONS", "START_OPTIONS_CAPABILITY", "Option", "canonical_options", "parse_size"]

START_OPTIONS_CAPABILITY = "start-options"  # lotc.agent.connection.CAPABILITIES

MIN_LOG_SIZE = 4096  # a smaller file would rotate on nearly every line
MAX_LOG_SIZE = 2**40
MAX_LOG_KEEP = 1000
_SIZE = re.compile(r"(\d{1,15})([KMGT]?)(i?B?)", re.IGNORECASE)
_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def parse_size(text: str) -> int:
    """'10M' -> 10485760 (K, M, G, T are powers of 1024; 'KiB', 'MB' accepted too)."""
    match = _SIZE.fullmatch(text.strip())
    if match is None:
        raise InvalidRequest(f"{text[:40]!r} is not a size: write bytes or 64K, 10M, 1G")
    return int(match[1]) * _UNITS[match[2].upper()]


def _log_size(text: str) -> int:
    size = parse_size(text)
    if not MIN_LOG_SIZE <= size <= MAX_LOG_SIZE:
        raise InvalidRequest(f"{text[:40]!r} is out of range: from 4K to 1T bytes per file")
    return size


def _log_keep(text: str) -> int:
    if not text.strip().isdigit():
        raise InvalidRequest(f"{text[:40]!r} is not a whole number of copies")
    keep = int(text)
    if keep > MAX_LOG_KEEP:
        raise InvalidRequest(f"{keep} is too large: at most {MAX_LOG_KEEP} copies")
    return keep


@dataclass(frozen=True)
class Option:
    key: str  # on the wire and in the model
    field: str  # lotc.agent.process.ProcessSpec field it sets
    parse: Callable[[str], int]  # text -> value; InvalidRequest in plain words


OPTIONS: dict[str, Option] = {option.key: option for option in (
    Option("log-size", "log_size", _log_size),
    Option("log-keep", "log_keep", _log_keep),
)}


def canonical_options(pairs: Iterable[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    """Check every key and value; return them sorted, each value in canonical text."""
    found: dict[str, str] = {}
    for key, text in pairs:
        option = OPTIONS.get(key)
        if option is None:
            raise InvalidRequest(f"unknown process option {key[:40]!r}: "
                                 f"known are {', '.join(sorted(OPTIONS))}")
        if key in found:
            raise InvalidRequest(f"process option {key!r} given twice")
        try:
            found[key] = str(option.parse(text))
        except InvalidRequest as exc:
            raise InvalidRequest(f"process option {key}: {exc}") from None
    return tuple(sorted(found.items()))


def spec_fields(pairs: Iterable[tuple[str, str]]) -> dict[str, int]:
    """ProcessSpec keyword arguments for these (already checked) options."""
    return {OPTIONS[key].field: OPTIONS[key].parse(text) for key, text in canonical_options(pairs)}
