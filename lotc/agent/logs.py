"""Process logs: pipes read by the agent, written to files rotated by size, tailed, followed.

Theory of operation
-------------------
A process's stdout and stderr are pipes (pipe.py); the agent reads them and
appends to `logs/<name>/stdout.log` and `stderr.log` (`LogWriter`). Being in
the data path is what makes rotation exact: before a write would take the
live file past `max_bytes`, the whole lines that still fit are written, the
copies shift (.1 -> .2 ...), the live file is renamed to `.1` and a new one is
opened. So a file holds at most `max_bytes` plus the rest of one line, no
byte is lost (nothing else writes the file, there is no copy-then-truncate
window), and every file has the same mode (0640). With `backups` 0 the live
file is emptied instead.

Each line starts with the time the agent read it, in UTC
(`2026-12-02T22:30:01.123456Z `, lotc/logstamp.py), which readers can take off
again. A line that arrives in pieces is stamped once.

Agent restarts: the pipes survive them (see pipe.py), and a new writer finds
from the file whether it ends in the middle of a line, so nothing is stamped
twice and nothing is lost; while no agent reads, the process's writes wait in
the pipe and then block: output is delayed for the restart, not lost.

Readers: `tail` reads the last lines of the live file and, if needed, the
rotated copies; `LogFollower` is polled every `follow_interval` and, when the
file shrank (rotated), finishes the old bytes from `.1` first. Both work on
bytes and decode each line as UTF-8 with replacement characters.
"""
from __future__ import annotations

import errno
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lotc.logstamp import split_timestamp, timestamp
from protocol.enums import StreamKind

__all__ = ["LogConfig", "LogFollower", "LogWriter", "log_path", "remove_logs", "rotate",
           "split_timestamp", "tail"]

logger = logging.getLogger(__name__)

_BLOCK = 64 * 1024
MAX_LINE = 64 * 1024  # a "line" without a newline is cut here when followed
MAX_READ = 1024 * 1024  # bytes read per poll of a followed file: a flood cannot stall the loop
FILE_MODE = 0o640  # every log file, live or rotated
_LOG_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC


@dataclass(frozen=True)
class LogConfig:
    max_bytes: int = 10 * 1024 * 1024  # rotate before a file passes this size
    backups: int = 5  # rotated copies kept (.1 ... .N)
    follow_interval: float = 0.1  # seconds between polls of a followed file


def log_path(root: Path, name: str, stream: StreamKind) -> Path:
    return root / name / f"{stream.name.lower()}.log"


def remove_logs(root: Path, name: str) -> None:
    """Delete a removed process's log files (and its directory). Blocking."""
    directory = root / name
    for path in directory.glob("*.log*"):
        path.unlink(missing_ok=True)
    try:
        directory.rmdir()
    except FileNotFoundError:
        pass
    except OSError as exc:  # something else was put there: leave it
        logger.warning("kept %s: %s", directory, exc)


def _backup(path: Path, n: int) -> Path:
    return path.with_name(f"{path.name}.{n}")


def rotate(path: Path, backups: int) -> None:
    """Shift old copies and rename the live file to .1 (or drop it with no backups)."""
    if backups <= 0:
        path.unlink(missing_ok=True)
        return
    _backup(path, backups).unlink(missing_ok=True)
    for n in range(backups - 1, 0, -1):
        if _backup(path, n).exists():
            os.replace(_backup(path, n), _backup(path, n + 1))
    if path.exists():
        os.replace(path, _backup(path, 1))


def _through_newline(buf: bytes) -> int:
    """Length of the first line of `buf` with its newline (all of it if none)."""
    end = buf.find(b"\n")
    return len(buf) if end < 0 else end + 1


def _last_byte(path: Path, size: int) -> bytes:
    with open(path, "rb") as f:
        f.seek(size - 1)
        return f.read(1)


def _utc_us() -> int:
    return time.time_ns() // 1000


class LogWriter:
    """Appends one stream's output to its file: stamps lines, rotates by size. Blocking
    calls, each quick (page cache): the pump (pipe.py) runs them on the trio thread."""

    def __init__(self, path: Path, config: LogConfig,
                 clock: Callable[[], int] = _utc_us) -> None:
        self.path, self.config, self._clock = path, config, clock
        self._fd = -1
        self.size = 0
        self._mid_line = False  # the file's last byte is not a newline
        self._at_line_start = True  # the next byte read begins a line: stamp it
        self._dropped = 0
        self._open()
        self._at_line_start = not self._mid_line

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, _LOG_FLAGS, FILE_MODE)
        os.fchmod(self._fd, FILE_MODE)  # the umask must not make one file differ
        self.size = os.fstat(self._fd).st_size
        self._mid_line = self.size > 0 and _last_byte(self.path, self.size) != b"\n"

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def write(self, data: bytes) -> None:
        """Stamp and append what the process wrote; drop it (counted) if the disk is full."""
        if not data:
            return
        prefix = timestamp(self._clock())
        body = data.replace(b"\n", b"\n" + prefix)
        if self._at_line_start:
            body = prefix + body
        self._at_line_start = data.endswith(b"\n")
        if self._at_line_start:
            body = body[:-len(prefix)]
        try:
            self._append(body)
        except OSError as exc:
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            self._dropped += len(data)
            if self._dropped == len(data):  # once per full-disk episode
                logger.error("%s: disk full, dropping output", self.path)
            return
        if self._dropped:
            logger.warning("%s: %d bytes of output dropped while the disk was full",
                           self.path, self._dropped)
            self._dropped = 0

    def _append(self, buf: bytes) -> None:
        limit = self.config.max_bytes
        while buf:
            room = max(0, limit - self.size)
            if len(buf) <= room:
                self._put(buf)
                return
            if self._mid_line:  # finish the line this file ends with (a line without end
                cut = _through_newline(buf)  # is cut after MAX_LINE more)
                cut = min(cut, max(0, limit + MAX_LINE - self.size))
                if cut:  # then look again: the lines after it may still fit in this file
                    self._put(buf[:cut])
                    buf = buf[cut:]
                    continue
            else:  # the whole lines that fit; a line longer than a whole file goes alone
                cut = buf.rfind(b"\n", 0, room) + 1
                if cut == 0 and self.size == 0:
                    cut = _through_newline(buf)
            if cut:
                self._put(buf[:cut])
                buf = buf[cut:]
            if buf:
                self._rotate()

    def _put(self, buf: bytes) -> None:
        view = memoryview(buf)
        while view:
            n = os.write(self._fd, view)
            self.size += n
            view = view[n:]
        self._mid_line = not buf.endswith(b"\n")

    def _rotate(self) -> None:
        self.close()
        rotate(self.path, self.config.backups)
        self._open()
        logger.debug("rotated %s", self.path)


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
