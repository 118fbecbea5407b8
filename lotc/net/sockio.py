"""Reads and writes on a plain socket that never wait, and the one rule for their errors.

The hot paths read and write sockets with os.read/os.write instead of going through
trio's SocketStream (see receiving.py, sending.py, readhub.py: about half the CPU per
frame). Whoever calls them must still see a connection end exactly as SocketStream
would tell it, so that one `except` fits every path (DESIGN.md section 5):
- trio.ClosedResourceError: we closed the socket ourselves (EBADF, ENOTSOCK, fd -1);
- trio.BrokenResourceError: the peer or the network broke it (any other OSError),
  with the OSError as its cause.
`raise_stream_error` is that rule, written once (it mirrors trio's own translation in
trio/_highlevel_socket.py, messages included).
"""
from __future__ import annotations

import errno
import os
from typing import NoReturn

import trio

RECEIVE_CHUNK = 64 * 1024
# The errnos of a socket that we closed; trio's SocketStream uses the same two.
CLOSED_ERRNOS = frozenset({errno.EBADF, errno.ENOTSOCK})


def closed_error() -> trio.ClosedResourceError:
    return trio.ClosedResourceError("this socket was already closed")


def raise_stream_error(exc: OSError) -> NoReturn:
    """Raise the stream error that the socket error `exc` means (see the module docstring)."""
    if exc.errno in CLOSED_ERRNOS:
        raise closed_error() from None
    raise trio.BrokenResourceError(f"socket connection broken: {exc}") from exc


def read_now(fd: int) -> bytes | None:
    """What the socket `fd` holds (b"" at EOF), or None if nothing has arrived yet."""
    if fd == -1:
        raise closed_error()
    try:
        return os.read(fd, RECEIVE_CHUNK)
    except BlockingIOError:
        return None
    except OSError as exc:
        raise_stream_error(exc)


def write_now(fd: int, data: bytes) -> int:
    """How many bytes of `data` the socket `fd` took at once (0 when its buffer is full)."""
    if fd == -1:
        raise closed_error()
    try:
        return os.write(fd, data)
    except BlockingIOError:
        return 0
    except OSError as exc:
        raise_stream_error(exc)
