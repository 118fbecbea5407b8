"""Limits LOTC sets on values admins give, beyond what the wire can carry.

The console checks them before sending (in the user's words: its options),
and the server checks them again on whatever any client sends.
"""
from __future__ import annotations

from lotc.errors import InvalidRequest

# A liveness deadline shorter than this is missed by a healthy process on a busy
# node (it must beat twice per deadline, and a GC pause or a loaded core costs
# tens of ms), and a value that small is almost always a typo for seconds.
MIN_LIVENESS_MS = 100


def check_liveness_ms(value: int) -> int:
    """Return `value` (0: no watchdog) unless it is a deadline too short to keep."""
    if 0 < value < MIN_LIVENESS_MS:
        raise InvalidRequest(f"a liveness timeout of {value} ms is too short: at least "
                             f"{MIN_LIVENESS_MS} ms (0 turns the watchdog off)")
    return value
