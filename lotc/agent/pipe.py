"""The output pipes of managed processes: made at spawn, re-opened after an agent restart.

Theory of operation
-------------------
A process's stdout and stderr are pipes whose read ends the agent pumps into
its log files (`pump`, writing through logs.LogWriter). A pipe whose last
reader is gone fails every write (EPIPE, and SIGPIPE kills most programs),
and the agent's end goes away with the agent. So the child also inherits a
copy of each read end (the "holder", same descriptor number as the agent's):
while the process lives its pipes have a reader, and with the agent away its
writes fill the pipe (PIPE_SIZE where the system allows) and then wait. The next
agent opens `/proc/<pid>/fd/<holder>` (opening a pipe there gives a new
descriptor on the same pipe), checks it is the pipe saved in the record (its
inode), and pumps again: the output was delayed by the restart, not lost.
A program that closes every descriptor it inherited loses that guard (during
an agent restart its writes then fail, as with any pipe); its stdout or
stderr, if still the pipe, is tried next.
"""
from __future__ import annotations

import fcntl
import logging
import os
import stat
from typing import Protocol

import trio

from lotc.agent.logs import MAX_READ

__all__ = ["PipeRecord", "attach", "make_pipe", "pump", "record_of"]

logger = logging.getLogger(__name__)

# What a process may write unread. Pipe pages count against a per-user budget
# (pipe-user-pages-soft, 64 MiB by default; past it new pipes get 8 KiB), so two of
# these per process leave room for a hundred or so before any pipe shrinks.
PIPE_SIZE = 256 * 1024
_F_SETPIPE_SZ = 1031  # from <fcntl.h>; Python 3.11's fcntl does not name it
PipeRecord = tuple[int, int]  # (holder descriptor number in the child, pipe inode)


def make_pipe() -> tuple[int, int]:
    """(read, write) ends, both close-on-exec, the buffer as large as allowed."""
    read, write = os.pipe2(os.O_CLOEXEC)
    try:
        fcntl.fcntl(write, _F_SETPIPE_SZ, PIPE_SIZE)
    except OSError:  # a lower pipe-max-size: keep the default 64 KiB
        pass
    return read, write


def record_of(read_fd: int) -> PipeRecord:
    return read_fd, os.fstat(read_fd).st_ino


def attach(pid: int, saved: PipeRecord, fallback_fd: int) -> int | None:
    """A new read end on the pipe `saved` of a re-adopted process, or None. Blocking."""
    holder, inode = saved
    for number in (holder, fallback_fd):
        try:
            fd = os.open(f"/proc/{pid}/fd/{number}", os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            continue
        info = os.fstat(fd)
        if stat.S_ISFIFO(info.st_mode) and info.st_ino == inode:
            return fd
        os.close(fd)
    return None


class Sink(Protocol):
    """Where `pump` puts what it reads: a LogWriter, or `exec`'s capped buffer."""

    @property
    def path(self) -> object: ...  # named in the error when a write fails

    def write(self, data: bytes) -> object: ...

    def close(self) -> None: ...


async def pump(read_fd: int, writer: Sink) -> None:
    """Copy the pipe into the log until every writer has closed it (EOF) or we are cancelled.

    A read and its write are one step with no checkpoint between them, so a
    cancellation (agent shutdown) leaves unread output in the pipe, never in
    our hands. Each step is bounded (MAX_READ) and followed by a checkpoint:
    a flood cannot stall the loop.
    """
    os.set_blocking(read_fd, False)
    try:
        while True:
            try:
                data = os.read(read_fd, MAX_READ)
            except BlockingIOError:
                await trio.lowlevel.wait_readable(read_fd)
                continue
            if not data:
                return
            try:
                writer.write(data)
            except OSError as exc:  # the data is gone: say so, keep the process going
                logger.error("cannot write %s: %s", writer.path, exc)
            await trio.lowlevel.checkpoint()
    finally:
        writer.close()
