"""A one-line progress bar on a terminal, for uploads.

Redrawn in place with a carriage return, at most every REDRAW_INTERVAL_S so
a fast upload does not spend its time writing to the terminal, and erased
when done so the command's result is the only thing left on screen. When the
stream is not a terminal (a script, a pipe) nothing is drawn at all.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TextIO

from admin_console.render import human_size

logger = logging.getLogger(__name__)

REDRAW_INTERVAL_S = 0.1
BAR_WIDTH = 30


class Progress:
    def __init__(self, label: str, total: int, stream: TextIO | None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.label = label
        self.total = total
        self.stream = stream  # None: draw nothing
        self.clock = clock
        self.done = 0
        self._started = clock()
        self._last_draw = float("-inf")
        self._drawn = False

    def update(self, done: int) -> None:
        self.done = done
        if self.stream is None:
            return
        now = self.clock()
        if now - self._last_draw >= REDRAW_INTERVAL_S or done >= self.total:
            self._last_draw = now
            self._write("\r" + self.line(now))

    def line(self, now: float) -> str:
        fraction = min(1.0, self.done / self.total) if self.total else 1.0
        filled = int(fraction * BAR_WIDTH)
        bar = "#" * filled + "." * (BAR_WIDTH - filled)
        elapsed = max(now - self._started, 1e-6)
        rate = human_size(self.done / elapsed)
        return (f"{self.label} [{bar}] {fraction:4.0%} "
                f"{human_size(self.done)}/{human_size(self.total)} {rate}/s")

    def finish(self) -> None:
        """Erase the bar (the caller prints the outcome)."""
        if self.stream is not None and self._drawn:
            self._write("\r\x1b[2K")

    def _write(self, text: str) -> None:
        assert self.stream is not None
        try:
            self.stream.write(text)
            self.stream.flush()
            self._drawn = True
        except OSError:  # the terminal went away: the upload itself must carry on
            logger.debug("cannot draw progress", exc_info=True)
            self.stream = None
