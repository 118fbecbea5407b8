"""Process options: the one table of keys PROC_START_OPTIONS may carry.

An option travels as text (KeyValue) in its canonical form, so the console,
the server (which stores it in the desired state) and the agent (which
applies it to its ProcessSpec) all read it through the same parser here. A
later option (user, memory, cpus...) is a new row of OPTIONS, not a new
message. Pure: no I/O.
"""
from __future__ import annotations

import posixpath
import re
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from typing import Any

from lotc.errors import InvalidRequest
from lotc.health_checks import parse_check
from lotc.parse.durations import parse_duration

__all__ = ["HEALTH_CAPABILITY", "IDENTITY_CAPABILITY", "LIMITS_CAPABILITY", "OPTIONS", "START_OPTIONS_CAPABILITY", "Option",
           "agent_options", "canonical_options", "parse_size", "refused_options"]

START_OPTIONS_CAPABILITY = "start-options"  # lotc.agent.connection.CAPABILITIES
IDENTITY_CAPABILITY = "process-identity"  # --user, --nofile, --env-file (issue 16)
LIMITS_CAPABILITY = "cgroup-limits"  # --memory, --cpus, --max-pids (lotc/agent/cgroup.py)
HEALTH_CAPABILITY = "health-checks"  # --check and its settings (lotc/agent/health.py)

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


# ---- identity and environment (issue 16: --nofile, --user, --env-file, --instances) ----
MAX_NOFILE = 2**20  # the kernel's default fs.nr_open
MAX_INSTANCES = 1000
_USER_NAME = r"[A-Za-z_][A-Za-z0-9_.-]{0,31}\$?"  # useradd's names (a trailing $ for machines)
_USER = re.compile(rf"({_USER_NAME})(?::({_USER_NAME}))?")


def _count(label: str, maximum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        if not text.strip().isdigit() or not 1 <= int(text) <= maximum:
            raise InvalidRequest(f"{text[:40]!r} is not a number of {label} from 1 to {maximum}")
        return int(text)
    return parse


def _user(text: str) -> str:
    if _USER.fullmatch(text) is None:
        raise InvalidRequest(f"{text[:40]!r} is not a user name: write NAME or NAME:GROUP")
    return text


def _bundle_file(text: str) -> str:
    """A path inside the bundle, in canonical form (the agent re-checks symlinks)."""
    if not text or text.startswith("/") or "\0" in text:
        raise InvalidRequest(f"{text[:40]!r} must be a file path relative to the bundle")
    normal = posixpath.normpath(text)
    if normal == ".." or normal.startswith("../"):
        raise InvalidRequest(f"{text[:40]!r} leaves the bundle")
    return normal


MIN_MEMORY = 2**20  # below a MiB the program cannot even be loaded
MAX_PIDS = 4194304  # the kernel's PID_MAX_LIMIT
_CPUS = re.compile(r"(\d{1,4})(?:\.(\d{1,3}))?")


def _memory(text: str) -> int:
    size = parse_size(text)
    if not MIN_MEMORY <= size <= MAX_LOG_SIZE:
        raise InvalidRequest(f"{text[:40]!r} is out of range: from 1M to 1T")
    return size


def _cpus(text: str) -> str:
    """'0.5' -> '0.5', '2' -> '2': CPUs with at most 3 decimals (see cpu_milli)."""
    match = _CPUS.fullmatch(text.strip())
    milli = 0 if match is None else int(match[1]) * 1000 + int((match[2] or "").ljust(3, "0"))
    if not 1 <= milli <= 1024 * 1000:
        raise InvalidRequest(f"{text[:40]!r} is not a number of CPUs from 0.001 to 1024 "
                             "(0.5 is half of one CPU)")
    return f"{milli // 1000}.{milli % 1000:03d}".rstrip("0").rstrip(".")


def cpu_milli(text: str) -> int:
    """Thousandths of a CPU of a canonical --cpus value; 0 for none."""
    if not text:
        return 0
    whole, _, decimals = text.partition(".")
    return int(whole) * 1000 + int(decimals.ljust(3, "0"))
# ---- end of issue 16's parsers ----


def _check(text: str) -> str:
    return parse_check(text).text()


def _seconds(label: str, minimum: float, maximum: float) -> Callable[[str], float]:
    def parse(text: str) -> float:
        seconds = parse_duration(text)
        if not minimum <= seconds <= maximum:
            raise InvalidRequest(f"{text[:40]!r} is out of range: {label} is from "
                                 f"{minimum:g} s to {maximum:g} s")
        return seconds
    return parse


@dataclass(frozen=True)
class Option:
    key: str  # on the wire and in the model
    field: str  # lotc.agent.process.ProcessSpec field it sets; "": the server's alone
    parse: Callable[[str], int | float | str]  # text -> value; InvalidRequest in plain words
    capability: str = START_OPTIONS_CAPABILITY  # what an agent announces to apply it
    # True: an agent without the capability runs the process without it (log sizes);
    # False: it must not run at all (running as root what asked for --user is worse).
    skippable: bool = True


OPTIONS: dict[str, Option] = {option.key: option for option in (
    Option("log-size", "log_size", _log_size),
    Option("log-keep", "log_keep", _log_keep),
    # issue 16: identity, limits and environment, applied in the child (agent/identity.py)
    Option("nofile", "nofile", _count("open files", MAX_NOFILE), IDENTITY_CAPABILITY, False),
    Option("user", "user", _user, IDENTITY_CAPABILITY, False),
    Option("env-file", "env_file", _bundle_file, IDENTITY_CAPABILITY, False),
    Option("instances", "", _count("instances", MAX_INSTANCES)),  # the server expands it
    # issue 16: limits, written to the process's cgroup (agent/cgroup.py)
    Option("memory", "memory", _memory, LIMITS_CAPABILITY, False),
    Option("cpus", "cpus", _cpus, LIMITS_CAPABILITY, False),
    Option("max-pids", "max_pids", _count("processes", MAX_PIDS), LIMITS_CAPABILITY, False),
    # issue 17: health checks, run by the agent (agent/health.py)
    Option("check", "check", _check, HEALTH_CAPABILITY, False),
    Option("check-interval", "check_interval", _seconds("the interval", 0.1, 86400),
           HEALTH_CAPABILITY, False),
    Option("check-timeout", "check_timeout", _seconds("the timeout", 0.01, 3600),
           HEALTH_CAPABILITY, False),
    Option("check-failures", "check_failures", _count("failures", 100), HEALTH_CAPABILITY,
           False),
    Option("check-grace", "check_grace", _seconds("the grace", 0, 86400), HEALTH_CAPABILITY,
           False),
)}


def agent_options(pairs: Iterable[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    """The options an agent applies (the server keeps the others, e.g. instances)."""
    return tuple((key, text) for key, text in pairs if OPTIONS[key].field)


def refused_options(pairs: Iterable[tuple[str, str]], capabilities: Collection[str]) -> str:
    """Why an agent with these capabilities must not run a spec with these options ("")."""
    missing = [f"--{key}" for key, _ in agent_options(pairs)
               if not OPTIONS[key].skippable and OPTIONS[key].capability not in capabilities]
    if not missing:
        return ""
    return (f"this agent cannot apply {', '.join(missing)}: its LOTC is too old "
            "(upgrade the agent)")


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


def spec_fields(pairs: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """ProcessSpec keyword arguments for these (already checked) options.

    Typed Any because each option's parser gives its own field's type (int or str),
    which a single dict type cannot say per key.
    """
    return {OPTIONS[key].field: OPTIONS[key].parse(text)
            for key, text in agent_options(canonical_options(pairs))}
