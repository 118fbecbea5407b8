"""Liveness helper for programs run by LOTC (or systemd): the sd_notify protocol in Python.

A managed process proves it is alive by sending datagrams to the Unix socket
named in `NOTIFY_SOCKET` (a name starting with '@' is in Linux's abstract
namespace). With a liveness timeout, `WATCHDOG_USEC` holds it in
microseconds: send a beat at least every half of it. Every function here is a
no-op returning False when `NOTIFY_SOCKET` is unset, so the same program runs
unchanged by hand::

    from lotc import liveness
    liveness.ready()
    while True:
        do_some_work()
        liveness.beat()

`interval()` says how often to beat (half the timeout, as systemd advises).

From a shell script, one datagram per beat, with Python (no LOTC needed)::

    python3 -c 'import os, socket; a = os.environ["NOTIFY_SOCKET"]
    a = "\\0" + a[1:] if a[0] == "@" else a
    socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).sendto(b"WATCHDOG=1", a)'

or with socat (the abstract name without its '@')::

    printf WATCHDOG=1 | socat - "ABSTRACT-SENDTO:${NOTIFY_SOCKET#@}"

or with systemd's own `systemd-notify WATCHDOG=1` where it is installed.
A sender must belong to the process's session (the process or its
descendants): datagrams from elsewhere are ignored.
"""
from __future__ import annotations

import logging
import os
import socket

__all__ = ["beat", "interval", "notify", "ready", "status", "stopping", "trigger"]

logger = logging.getLogger(__name__)


def _address() -> str | None:
    address = os.environ.get("NOTIFY_SOCKET")
    if not address or address[0] not in "@/":
        return None
    return "\0" + address[1:] if address[0] == "@" else address


def notify(message: str) -> bool:
    """Send one raw sd_notify message ("KEY=VALUE" lines). True if it was sent."""
    address = _address()
    if address is None:
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        try:
            sock.sendto(message.encode("utf-8"), address)
        except OSError as exc:  # agent gone or restarting: a missed beat, not a crash
            logger.debug("sd_notify to %r failed: %s", address, exc)
            return False
    return True


def beat() -> bool:
    """I am alive (WATCHDOG=1)."""
    return notify("WATCHDOG=1")


def ready() -> bool:
    """Start-up is done (READY=1)."""
    return notify("READY=1")


def status(text: str) -> bool:
    """A one-line status shown in `ps` (STATUS=text)."""
    return notify("STATUS=" + text.replace("\n", " "))


def stopping() -> bool:
    """I am shutting down on purpose (STOPPING=1)."""
    return notify("STOPPING=1")


def trigger() -> bool:
    """Ask to be treated as hung right now (WATCHDOG=trigger)."""
    return notify("WATCHDOG=trigger")


def interval() -> float | None:
    """Seconds between beats (half of WATCHDOG_USEC), or None without a watchdog."""
    try:
        usec = int(os.environ.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    return usec / 2e6 if usec > 0 else None
