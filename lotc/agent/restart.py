"""Restart decisions: policy, exponential backoff that resets after a stable run, a limit.

Pure logic (no trio, no processes) so every rule is tested directly:

* `should_restart(policy, outcome)`: ALWAYS restarts any unrequested end,
  ON_FAILURE restarts a non-zero exit, a death by signal, a liveness miss and
  an end whose status is unknown (a re-adopted process: we cannot tell, so we
  assume the worst), NEVER never does. An end the admin asked for
  (terminate, kill, remove) is never restarted.
* `backoff_delay(n, base, cap)`: the first restart after a stable run is
  immediate (a crash after a day of service should cost milliseconds, as with
  systemd's 100 ms), then base, 2*base, 4*base... capped.
* `RestartBudget`: more than `limit` restarts within `window` seconds means
  the program is crash-looping: it is marked FAILED and left alone until an
  admin starts it again. A run that lasts `stable_after` seconds resets the
  backoff exponent (the window keeps counting on its own clock).
"""
from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, field

from protocol.enums import RestartPolicy

__all__ = ["RestartBudget", "RunOutcome", "backoff_delay", "should_restart"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunOutcome:
    """How one run ended. Both None: the status is unknown (re-adopted process)."""

    exit_code: int | None
    signal: int | None
    requested: bool = False  # the admin asked for the end (terminate/kill/remove)
    liveness_missed: bool = False
    out_of_memory: int = 0  # > 0: the kernel killed it for this memory limit (bytes)
    unhealthy: int = 0  # > 0: killed after this many failed health checks in a row

    @property
    def clean(self) -> bool:
        return (self.exit_code == 0 and not self.liveness_missed and not self.out_of_memory
                and not self.unhealthy)

    def describe(self) -> str:
        if self.liveness_missed:
            return "killed after a missed liveness deadline"
        if self.unhealthy:
            return f"killed after {self.unhealthy} failed health checks in a row"
        if self.out_of_memory:
            return (f"killed by the kernel: out of memory "
                    f"(limit {self.out_of_memory / 2**20:g} MiB)")
        if self.signal is not None:
            return f"killed by signal {self.signal}"
        if self.exit_code is not None:
            return f"exited with code {self.exit_code}"
        return "ended (status unknown: re-adopted process)"


def should_restart(policy: RestartPolicy, outcome: RunOutcome) -> bool:
    if outcome.requested or policy == RestartPolicy.NEVER:
        return False
    if policy == RestartPolicy.ALWAYS:
        return True
    return not outcome.clean


def backoff_delay(n: int, base: float, cap: float) -> float:
    """Delay before the restart that follows `n` earlier ones since the last stable run."""
    if n <= 0:
        return 0.0
    # 2**(n-1) overflows a float past ~1024; the cap is reached long before.
    return min(cap, base * 2.0 ** min(n - 1, 62))


@dataclass
class RestartBudget:
    limit: int  # restarts allowed within `window`; 0 means no limit
    window: float
    stable_after: float
    consecutive: int = 0  # restarts since the last stable run: the backoff exponent
    _times: deque[float] = field(default_factory=deque)

    def run_ended(self, ran_for: float) -> None:
        if ran_for >= self.stable_after:
            self.consecutive = 0

    def exhausted(self, now: float) -> bool:
        """True if one more restart now would exceed the limit."""
        while self._times and now - self._times[0] > self.window:
            self._times.popleft()
        return self.limit > 0 and len(self._times) >= self.limit

    def next_delay(self, base: float, cap: float) -> float:
        return backoff_delay(self.consecutive, base, cap)

    def record_restart(self, now: float) -> None:
        self._times.append(now)
        self.consecutive += 1

    def reset(self) -> None:
        """An admin (re)start: forget the crash history."""
        self.consecutive = 0
        self._times.clear()
