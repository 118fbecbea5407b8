"""The agent side of sd_notify: one Unix datagram socket per managed process.

A socket per process is the simplest correct attribution: whatever arrives
on it concerns that process. The socket is bound in Linux's abstract
namespace (`NOTIFY_SOCKET=@lotc/...`, as systemd allows): no file to clean
up after a crash, no 108-byte path limit, and a restarted agent can bind the
very same name again, so a re-adopted process keeps beating into the right
place. SO_PASSCRED gives the sender's pid with every datagram; the runner
uses it to drop datagrams from outside the process's session (a stale
grandchild of a previous run, or a stranger).

Messages are newline-separated KEY=VALUE assignments (`READY=1`,
`WATCHDOG=1`, `STATUS=text`, `WATCHDOG=trigger`, `WATCHDOG_USEC=N`,
`STOPPING=1`...). Unknown keys are ignored, like systemd does.
"""
from __future__ import annotations

import logging
import secrets
import socket
import struct

import trio

__all__ = ["MAX_DATAGRAM", "NotifySocket", "new_address", "parse_notify"]

logger = logging.getLogger(__name__)

MAX_DATAGRAM = 4096  # systemd's own limit for a notify message is about this size
_UCRED = struct.Struct("iII")  # pid, uid, gid


def new_address() -> str:
    """A fresh abstract socket name for a new process record."""
    return f"@lotc/{secrets.token_hex(12)}"


def parse_notify(data: bytes) -> dict[str, str]:
    """KEY=VALUE lines to a dict; malformed lines are skipped."""
    fields: dict[str, str] = {}
    for line in data.decode("utf-8", "replace").split("\n"):
        key, sep, value = line.partition("=")
        if sep and key:
            fields[key] = value
    return fields


def _sockaddr(address: str) -> str:
    return "\0" + address[1:] if address.startswith("@") else address


class NotifySocket:
    def __init__(self, address: str) -> None:
        self.address = address
        raw = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        try:
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
            raw.bind(_sockaddr(address))  # a Unix name needs no resolution: bind it now
        except OSError:
            raw.close()
            raise
        self._sock = trio.socket.from_stdlib_socket(raw)

    async def receive(self) -> tuple[int | None, dict[str, str]]:
        """The next message: (sender pid or None, fields)."""
        data, ancdata, _flags, _addr = await self._sock.recvmsg(
            MAX_DATAGRAM, socket.CMSG_SPACE(_UCRED.size))
        sender = None
        for level, kind, payload in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                sender = _UCRED.unpack(payload[:_UCRED.size])[0]
        return sender, parse_notify(data)

    def close(self) -> None:
        self._sock.close()
