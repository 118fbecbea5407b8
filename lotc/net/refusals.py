"""Refused connections counted per source address: one log line a window, login delays.

Theory of operation
-------------------
A hostile or misconfigured client refused over and over (a wrong token, a plain
client on a TLS port) used to write one warning per attempt: an attacker could
fill the log, and an operator could not see the wood for the trees. Here each
(source address, kind of refusal) has a window of `window_s`: its first refusal
is logged at once, in full; the others are only counted, and when the window
ends (`sweep`, run by `run`) one line says how many there were.

Failed logins also cost the client time: past `FREE_LOGIN_FAILURES` in a window,
each further refusal from that address is answered after a delay that doubles
up to `MAX_LOGIN_DELAY_S` (`login_delay`). Only refusals wait: a client that
logs in is never looked up here, so a good agent behind the same address as an
attacker is not slowed. A delayed refusal holds its connection, so at most
`MAX_HELD_PER_SOURCE` (and `MAX_HELD` in all) wait at once; beyond that a
refusal is answered at once. Tokens are 256-bit secrets, so this is not what
stops guessing; it keeps a flood cheap for us and slow for the flooder.

Memory is bounded: at most `MAX_SOURCES` windows; when full, the oldest is
summarised and dropped.
"""
from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import trio

logger = logging.getLogger(__name__)

WINDOW_S = 60.0
FREE_LOGIN_FAILURES = 5  # per source and window, answered at once
FIRST_LOGIN_DELAY_S = 0.5  # the 6th failure in a window waits this long, then doubling...
MAX_LOGIN_DELAY_S = 5.0  # ...up to this (under a client's 10 s handshake timeout)
MAX_HELD_PER_SOURCE = 16  # refusals waiting out their delay at once, per source
MAX_HELD = 1024  # ...and in all (each holds a file descriptor)
MAX_SOURCES = 10_000  # windows kept (memory stays bounded under a spoofed-address flood)

FAILED_LOGIN = "failed login"


def source_of(peer: str) -> str:
    """The address part of a `HOST:PORT` / `[V6]:PORT` peer name."""
    return peer.rsplit(":", 1)[0].strip("[]")


def login_delay(failures: int) -> float:
    """How long the `failures`-th failed login of a window waits for its answer."""
    beyond = failures - FREE_LOGIN_FAILURES
    if beyond <= 0:
        return 0.0
    return min(MAX_LOGIN_DELAY_S, FIRST_LOGIN_DELAY_S * 2 ** min(beyond - 1, 16))


@dataclass
class _Window:
    started: float
    count: int = 0


class Refusals:
    def __init__(self, window_s: float = WINDOW_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.window_s = window_s
        self._clock = clock
        self._windows: dict[tuple[str, str], _Window] = {}
        self._held: Counter[str] = Counter()
        self.totals: Counter[str] = Counter()  # refusals by kind since start (/metrics)

    def note(self, source: str, kind: str, message: str) -> int:
        """Count one refusal; log `message` if it opens a window. Returns the window's count."""
        now = self._clock()
        self.totals[kind] += 1
        key = (source, kind)
        window = self._windows.get(key)
        if window is not None and now - window.started >= self.window_s:
            self._close(key)
            window = None
        if window is None:
            while len(self._windows) >= MAX_SOURCES:
                self._close(next(iter(self._windows)))
            window = self._windows[key] = _Window(now)
            logger.warning("%s (further %ss from %s are counted, not logged, for %g s)",
                           message, kind, source, self.window_s)
        window.count += 1
        return window.count

    def sweep(self) -> None:
        """Close the windows that have ended, logging their counts."""
        now = self._clock()
        for key in [k for k, w in self._windows.items() if now - w.started >= self.window_s]:
            self._close(key)

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            await trio.sleep(self.window_s / 4)
            self.sweep()

    @contextmanager
    def hold(self, source: str) -> Iterator[bool]:
        """True (and counted as held) when one more refusal from `source` may wait."""
        allowed = self._held[source] < MAX_HELD_PER_SOURCE and self._held.total() < MAX_HELD
        if allowed:
            self._held[source] += 1
        try:
            yield allowed
        finally:
            if allowed:
                self._held[source] -= 1
                if not self._held[source]:
                    del self._held[source]

    def _close(self, key: tuple[str, str]) -> None:
        window = self._windows.pop(key)
        if window.count > 1:
            source, kind = key
            logger.warning("%d %ss from %s in %.0f s (the first was logged)",
                           window.count, kind, source, self._clock() - window.started)
