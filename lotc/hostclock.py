"""What the kernel says about this host's clock: synchronised or not, and how far off.

The SNTP responder (lotc/sntp.py) reports this instead of claiming a good clock
it knows nothing about. On Linux, `adjtimex` with modes 0 only reads (no
privilege needed): its return value is TIME_ERROR and `status` has STA_UNSYNC
while no NTP daemon disciplines the clock; `maxerror` is the daemon's root
distance plus 500 us for every second since it last spoke (the kernel grows it),
which is what a client needs as our root dispersion. Where there is no
`adjtimex` (not Linux), the state is unknown, and unknown is reported as
unsynchronised.
"""
from __future__ import annotations

import ctypes
import ctypes.util
from dataclasses import dataclass

__all__ = ["LEAP_ALARM", "ClockState", "read_clock_state"]

TIME_ERROR = 5  # adjtimex's return value for "clock not synchronised"
STA_INS, STA_DEL, STA_UNSYNC = 0x0010, 0x0020, 0x0040
LEAP_NONE, LEAP_INSERT, LEAP_DELETE, LEAP_ALARM = 0, 1, 2, 3  # NTP's leap indicator
UNKNOWN_ERROR_US = 16_000_000  # what Linux reports unsynchronised (NTP_PHASE_LIMIT)


class _Timex(ctypes.Structure):
    """struct timex from <sys/timex.h> (glibc, 64-bit: 208 bytes)."""

    _fields_ = [
        ("modes", ctypes.c_uint), ("offset", ctypes.c_long), ("freq", ctypes.c_long),
        ("maxerror", ctypes.c_long), ("esterror", ctypes.c_long), ("status", ctypes.c_int),
        ("constant", ctypes.c_long), ("precision", ctypes.c_long),
        ("tolerance", ctypes.c_long), ("time_sec", ctypes.c_long), ("time_usec", ctypes.c_long),
        ("tick", ctypes.c_long), ("ppsfreq", ctypes.c_long), ("jitter", ctypes.c_long),
        ("shift", ctypes.c_int), ("stabil", ctypes.c_long), ("jitcnt", ctypes.c_long),
        ("calcnt", ctypes.c_long), ("errcnt", ctypes.c_long), ("stbcnt", ctypes.c_long),
        ("tai", ctypes.c_int), ("_pad", ctypes.c_int * 11),
    ]


@dataclass(frozen=True)
class ClockState:
    synced: bool
    leap: int  # NTP leap indicator: 0 none, 1 insert, 2 delete, 3 alarm (unsynchronised)
    max_error_us: int  # upper bound on the clock's error

    @classmethod
    def unsynced(cls) -> ClockState:
        return cls(synced=False, leap=LEAP_ALARM, max_error_us=UNKNOWN_ERROR_US)


def _load_adjtimex() -> ctypes._CFuncPtr | None:  # type: ignore[name-defined]
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        return libc.adjtimex
    except (OSError, AttributeError):
        return None


_ADJTIMEX = _load_adjtimex()


def read_clock_state() -> ClockState:
    """The kernel's view now (about a microsecond: a syscall that only reads)."""
    if _ADJTIMEX is None:
        return ClockState.unsynced()
    timex = _Timex()  # modes = 0: read only
    result = _ADJTIMEX(ctypes.byref(timex))
    if result < 0:
        return ClockState.unsynced()
    if result == TIME_ERROR or timex.status & STA_UNSYNC:
        return ClockState(False, LEAP_ALARM, max(int(timex.maxerror), 0))
    leap = (LEAP_INSERT if timex.status & STA_INS
            else LEAP_DELETE if timex.status & STA_DEL else LEAP_NONE)
    return ClockState(True, leap, max(int(timex.maxerror), 0))
