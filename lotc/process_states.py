"""Sets of process states that the agent, the server and the console all reason with."""
from __future__ import annotations

from protocol.enums import ProcessState

__all__ = ["ALIVE", "RUNNABLE"]

S = ProcessState

# Running or about to run again by itself (a BACKOFF process restarts after its delay).
RUNNABLE: frozenset[ProcessState] = frozenset({S.STARTING, S.RUNNING, S.BACKOFF})

# States in which the process has (or is about to have) a live process group:
# the runnable ones and a suspended (SIGSTOP) one.
ALIVE: frozenset[ProcessState] = RUNNABLE | {S.STOPPED}
