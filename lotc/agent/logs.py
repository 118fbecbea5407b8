"""Process logs: files written by the processes themselves, rotated by size, tailed, followed.

Theory of operation
-------------------
A process's stdout and stderr are opened with O_APPEND on
`logs/<name>/stdout.log` and `stderr.log` and handed to it at spawn: the
program writes straight to the file. The agent is not in the data path, so a
chatty process costs the agent nothing and cannot block its loop, and, the
point of the choice, the output keeps its destination when the agent itself
restarts: a re-adopted process has no pipe to lose (see supervisor.py).

The price is rotation: we cannot make the process reopen its file, so
rotation copies and truncates (logrotate's `copytruncate`): older copies
shift (.1 -> .2 ...), the live file is copied to `.1`, then truncated to zero;
with O_APPEND the process's next write lands at the new start. Bytes written
between the end of the copy and the truncation (microseconds; the copy is
re-checked for growth before truncating) can be lost, and a file can exceed
`max_bytes` by what is written between two checks (`check_interval`).

Readers: `tail` reads the last lines of the live file and, if needed, the
rotated copies; `LogFollower` is polled every `follow_interval` and, when
the file shrank (rotated), finishes the old bytes from `.1` first. Both work
on bytes and decode each line as UTF-8 with replacement characters.
"""
from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from protocol.enums import StreamKind

__all__ = ["LogConfig", "LogFollower", "log_path", "rotate", "rotate_if_needed", "tail"]

logger = logging.getLogger(__name__)

_BLOCK = 64 * 1024
MAX_LINE = 64 * 1024  # a "line" without a newline is cut here when followed
MAX_READ = 1024 * 1024  # bytes read per poll of a followed file: a flood cannot stall the loop


@dataclass(frozen=True)
class LogConfig:
    max_bytes: int = 10 * 1024 * 1024  # rotate a file past this size
    backups: int = 5  # rotated copies kept (.1 ... .N)
    check_interval: float = 1.0  # seconds between size checks
    follow_interval: float = 0.1  # seconds between polls of a followed file


def log_path(root: Path, name: str, stream: StreamKind) -> Path:
    return root / name / f"{stream.name.lower()}.log"


def _backup(path: Path, n: int) -> Path:
    return path.with_name(f"{path.name}.{n}")


def rotate(path: Path, backups: int) -> None:
    """copytruncate: shift old copies, copy the live file to .1, truncate it. Blocking."""
    if backups > 0:
        for n in range(backups - 1, 0, -1):
            if _backup(path, n).exists():
                os.replace(_backup(path, n), _backup(path, n + 1))
        tmp = path.with_name(path.name + ".rotating")
        with open(path, "rb") as src, open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst, _BLOCK)
            # Catch up with what was appended during the copy, then cut at once.
            while chunk := src.read(_BLOCK):
                dst.write(chunk)
            os.truncate(path, 0)
        os.replace(tmp, _backup(path, 1))
    else:
        os.truncate(path, 0)


def rotate_if_needed(path: Path, config: LogConfig) -> bool:
    try:
        if os.stat(path).st_size <= config.max_bytes:
            return False
        rotate(path, config.backups)
    except FileNotFoundError:
        return False
    logger.debug("rotated %s", path)
    return True


def _last_lines(path: Path, wanted: int) -> list[bytes]:
    """Up to `wanted` last lines of one file (a final unterminated line counts)."""
    try:
        f = open(path, "rb")  # noqa: SIM115 - opened here to tell "missing" apart
    except FileNotFoundError:
        return []
    with f:
        end = f.seek(0, os.SEEK_END)
        data = b""
        pos = end
        while pos > 0 and data.count(b"\n") <= wanted:
            step = min(_BLOCK, pos)
            pos -= step
            f.seek(pos)
            data = f.read(step) + data
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    if pos > 0:
        lines = lines[1:]  # the first piece may be the tail of a longer line
    return lines[-wanted:] if wanted else []


def tail(path: Path, lines: int, backups: int) -> list[str]:
    """The last `lines` lines, reaching into rotated copies when the live file is short."""
    found: list[bytes] = []
    for n in range(backups + 1):
        if len(found) >= lines:
            break
        source = path if n == 0 else _backup(path, n)
        found = _last_lines(source, lines - len(found)) + found
    return [line.decode("utf-8", "replace") for line in found[-lines:]] if lines else []


def _read_from(path: Path, offset: int, limit: int) -> bytes:
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read(limit)
    except FileNotFoundError:
        return b""


class LogFollower:
    """New complete lines of one log file since the previous `poll`, across rotations."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self._offset = os.stat(path).st_size
        except FileNotFoundError:
            self._offset = 0
        self._pending = b""

    def poll(self) -> list[str]:
        """Read what was appended (at most MAX_READ bytes a call). Quick; non-blocking enough
        for the trio thread, as the files are local and the read is bounded."""
        try:
            size = os.stat(self.path).st_size
        except FileNotFoundError:
            return []
        data = b""
        if size < self._offset:  # rotated: the rest of what we had is at the end of .1
            data = _read_from(_backup(self.path, 1), self._offset, MAX_READ)
            self._offset = 0
        if size > self._offset:
            fresh = _read_from(self.path, self._offset, MAX_READ)
            self._offset += len(fresh)
            data += fresh
        *complete, self._pending = (self._pending + data).split(b"\n")
        if len(self._pending) > MAX_LINE:
            complete.append(self._pending)
            self._pending = b""
        return [line.decode("utf-8", "replace") for line in complete]
