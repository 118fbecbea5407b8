"""The process state machine: which transitions exist, and which commands each state accepts.

Theory of operation
-------------------
A managed process is one record that lives through many runs (incarnations).
Its `state` says what the supervisor sees now; its `desired` state says what
the admin asked for. Only the supervisor's per-process runner and its command
methods change `state`, and every change goes through `check_transition`, so
an impossible move (say EXITED -> STOPPED) is a bug caught at once instead of a
wrong `ps` line days later. Each accepted transition becomes one ProcessEvent.

    NONE ──start──> STARTING ──spawned──> RUNNING <──resume── STOPPED
                       │                    │  └────stop─────────^ │
                       └─spawn failed─> FAILED <─limit─┐           │
                                            │          │           │
                 RUNNING/STOPPED ──ended──> BACKOFF ──delay──> STARTING
                 RUNNING/STOPPED ──ended, no restart──> EXITED
                 EXITED/FAILED ──start/restart──> STARTING

A restart always passes through BACKOFF, even with a zero delay, so the event
stream tells "it died" and "it was started again" apart. On an agent restart
a record enters from NONE straight into RUNNING or STOPPED (re-adopted live
process) or EXITED/FAILED (loaded as it was left).

Commands are checked against `COMMANDS` before they touch anything, so a bad
request (resume of a running process...) becomes InvalidState with a plain
message and never half-applies.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

from lotc.errors import InternalError, InvalidState
from protocol.enums import Action, EventKind, ProcessState

__all__ = [
    "COMMANDS",
    "TRANSITIONS",
    "ProcessEvent",
    "check_command",
    "check_transition",
    "state_name",
]

logger = logging.getLogger(__name__)

S = ProcessState

# (old, new) -> what causes it. Anything not listed is a bug.
TRANSITIONS: dict[tuple[ProcessState, ProcessState], str] = {
    (S.NONE, S.STARTING): "first start",
    (S.NONE, S.RUNNING): "re-adopted a live process after an agent restart",
    (S.NONE, S.STOPPED): "re-adopted a suspended process after an agent restart",
    (S.NONE, S.EXITED): "loaded an ended process after an agent restart",
    (S.NONE, S.FAILED): "loaded a failed process after an agent restart",
    (S.STARTING, S.RUNNING): "spawned (exec succeeded)",
    (S.STARTING, S.STOPPED): "spawned with a stop requested while starting",
    (S.STARTING, S.FAILED): "could not be spawned",
    (S.RUNNING, S.STOPPED): "suspended (SIGSTOP)",
    (S.RUNNING, S.BACKOFF): "ended; will be restarted after a delay",
    (S.RUNNING, S.EXITED): "ended; no restart (policy or request)",
    (S.RUNNING, S.FAILED): "ended; restart limit reached",
    (S.STOPPED, S.RUNNING): "resumed (SIGCONT)",
    (S.STOPPED, S.BACKOFF): "ended while suspended; will be restarted",
    (S.STOPPED, S.EXITED): "ended while suspended; no restart",
    (S.STOPPED, S.FAILED): "ended while suspended; restart limit reached",
    (S.BACKOFF, S.STARTING): "backoff delay over",
    (S.BACKOFF, S.EXITED): "terminated during backoff",
    (S.EXITED, S.STARTING): "started again",
    (S.FAILED, S.STARTING): "started again",
}


# Action -> states in which the command is accepted.
COMMANDS: dict[Action, frozenset[ProcessState]] = {
    Action.START: frozenset({S.EXITED, S.FAILED}),  # a new name is always accepted
    Action.STOP: frozenset({S.STARTING, S.RUNNING}),
    Action.RESUME: frozenset({S.STOPPED}),
    # An ended process is accepted too: asking for what is already true succeeds, so a
    # script's `terminate` does not fail on a process that happened to end first.
    Action.TERMINATE: frozenset(ProcessState) - {S.NONE},
    Action.KILL: frozenset({S.STARTING, S.RUNNING, S.STOPPED}),
    Action.RESTART: frozenset(ProcessState) - {S.NONE},
}

_HINTS: dict[Action, str] = {
    Action.START: "it is already running; restart or remove it first",
    Action.STOP: "only a starting or running process can be stopped",
    Action.RESUME: "only a stopped (suspended) process can be resumed",
    Action.TERMINATE: "it is not running",
    Action.KILL: "it has no live process to signal",
    Action.RESTART: "it cannot be restarted",
}


def state_name(state: ProcessState) -> str:
    return state.name.lower()


_AS_WORDS = {S.BACKOFF: "waiting to restart (backoff)", S.NONE: "not started"}


def check_transition(old: ProcessState, new: ProcessState) -> str:
    """Return the description of old -> new, or raise InternalError if it is not allowed."""
    try:
        return TRANSITIONS[(old, new)]
    except KeyError:
        raise InternalError(
            f"bug: process state change {state_name(old)} -> {state_name(new)} is not allowed"
        ) from None


def check_command(action: Action, name: str, state: ProcessState) -> None:
    """Raise InvalidState in plain words if `action` is not accepted in `state`."""
    if state not in COMMANDS[action]:
        raise InvalidState(
            f"cannot {action.name.lower()} process {name!r}: "
            f"it is {_AS_WORDS.get(state, state_name(state))}; "
            f"{_HINTS[action]}"
        )


@dataclass(frozen=True)
class ProcessEvent:
    """One state change of one process, as reported to the server.

    `time_us` is UTC microseconds from the supervisor's clock (the agent's
    NTP-corrected clock in production). `exit_code`/`signal` are set on the
    transition out of a run: a code for a normal exit, a signal number when a
    signal ended it, both None otherwise (or when unknown, for a re-adopted
    process that ended while the agent was away).
    """

    time_us: int
    process: str
    old_state: ProcessState
    new_state: ProcessState
    reason: str
    exit_code: int | None = None
    signal: int | None = None
    kind: EventKind = EventKind.PROCESS_STATE
