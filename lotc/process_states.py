"""Sets of process states that the agent, the server and the console all reason with."""
from __future__ import annotations

from protocol.enums import ProcessState

__all__ = ["ALIVE", "ENDED_ON_REQUEST", "RUNNABLE", "ended_on_request"]

S = ProcessState

# Running or about to run again by itself (a BACKOFF process restarts after its delay).
RUNNABLE: frozenset[ProcessState] = frozenset({S.STARTING, S.RUNNING, S.BACKOFF})

# States in which the process has (or is about to have) a live process group:
# the runnable ones and a suspended (SIGSTOP) one.
ALIVE: frozenset[ProcessState] = RUNNABLE | {S.STOPPED}

# How the agent words the end of a run a command asked for (terminate, kill, the first
# half of a restart): "killed by signal 15 (on request)". The server follows only ends
# nobody asked for into the desired state (controller._follow_end): the command that
# asked has set it already, and a restart's end is not the process's end.
ENDED_ON_REQUEST = "on request"


def ended_on_request(reason: str) -> bool:
    return reason.endswith(f"({ENDED_ON_REQUEST})")
