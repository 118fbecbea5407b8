"""What each process command does, once: message, schedule action, verb, desired state.

A console command (PROC_STOP...), the same command forwarded to the agent, and a
schedule's `Action` are three spellings of one thing. `CONTROLS` has one row per
thing: the server takes from it the desired state it records, the agent the
supervisor verb it carries out (AgentCore.control), the scheduler the verb a fire
runs. Neither side spells a command as a string.

Imported by the server, the agent and the console alike: it depends only on protocol/.
"""
from __future__ import annotations

import enum
import signal as signals
from dataclasses import dataclass

from protocol.enums import Action, DesiredState
from protocol.messages import (
    Message,
    ProcKill,
    ProcRemove,
    ProcRestart,
    ProcResume,
    ProcStart,
    ProcStartOptions,
    ProcStop,
    ProcTerminate,
)


class Verb(enum.Enum):
    """What the agent's supervisor is asked to do (one method of Supervisor each)."""

    START = enum.auto()
    STOP = enum.auto()  # freeze the cgroup (or SIGSTOP the process group)
    RESUME = enum.auto()  # SIGCONT
    TERMINATE = enum.auto()  # SIGTERM, SIGKILL after the grace
    KILL = enum.auto()  # any signal, SIGKILL by default
    RESTART = enum.auto()
    REMOVE = enum.auto()  # terminate if alive, and forget it


@dataclass(frozen=True)
class ProcessControl:
    verb: Verb
    messages: tuple[type[Message], ...]  # the wire messages that ask for it
    action: Action | None  # the schedule action that does the same (None: no schedule can)
    # the desired state afterwards; None when the record goes (REMOVE)
    desired: DesiredState | None
    # True for KILL: only SIGKILL means "stay down"; another signal (SIGHUP to reload)
    # is only delivered and leaves the desired state as it was
    sigkill_only: bool = False

    def desired_after(self, signal: int = signals.SIGKILL) -> DesiredState | None:
        """The desired state this leaves the process in; None: unchanged (or removed)."""
        if self.sigkill_only and signal != signals.SIGKILL:
            return None
        return self.desired


CONTROLS: tuple[ProcessControl, ...] = (
    ProcessControl(Verb.START, (ProcStart, ProcStartOptions), Action.START,
                   DesiredState.RUNNING),
    ProcessControl(Verb.STOP, (ProcStop,), Action.STOP, DesiredState.STOPPED),
    ProcessControl(Verb.RESUME, (ProcResume,), Action.RESUME, DesiredState.RUNNING),
    ProcessControl(Verb.TERMINATE, (ProcTerminate,), Action.TERMINATE, DesiredState.EXITED),
    ProcessControl(Verb.KILL, (ProcKill,), Action.KILL, DesiredState.EXITED, sigkill_only=True),
    ProcessControl(Verb.RESTART, (ProcRestart,), Action.RESTART, DesiredState.RUNNING),
    ProcessControl(Verb.REMOVE, (ProcRemove,), None, None),
)

BY_MESSAGE: dict[type[Message], ProcessControl] = {
    cls: row for row in CONTROLS for cls in row.messages
}
BY_ACTION: dict[Action, ProcessControl] = {
    row.action: row for row in CONTROLS if row.action is not None
}
BY_VERB: dict[Verb, ProcessControl] = {row.verb: row for row in CONTROLS}


def for_message(body: Message) -> ProcessControl:
    return BY_MESSAGE[type(body)]


def for_action(action: Action) -> ProcessControl:
    return BY_ACTION[Action(action)]
