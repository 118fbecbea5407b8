"""Signal names as people type them: `SIGHUP`, `HUP`, `hup` or `1`."""
from __future__ import annotations

import signal

from lotc.errors import InvalidRequest

__all__ = ["parse_signal", "signal_word"]

SIGNAL_HELP = "use a name such as SIGTERM, HUP or USR1"


def parse_signal(name: str | int) -> signal.Signals:
    """'SIGHUP', 'hup', 'HUP' or '1' -> signal.SIGHUP; anything else is InvalidRequest."""
    text = str(name).strip().upper()
    try:
        if text.isdigit():
            return signal.Signals(int(text))
        # "SIG_DFL"/"SIG_IGN" are Handlers, not Signals, so they stay unknown here
        return signal.Signals[text if text.startswith("SIG") else "SIG" + text]
    except (KeyError, ValueError):
        raise InvalidRequest(f"unknown signal {name!r}: {SIGNAL_HELP}") from None


def signal_word(number: int) -> str:
    """9 -> 'SIGKILL'; a number this system does not name -> 'signal 99'."""
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"
