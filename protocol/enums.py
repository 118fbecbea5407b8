"""Named values shared by the wire protocol and the code on both ends.

They live here, beside the spec, so the codec, the generated docs and the
Wireshark dissector all take their names and numbers from one place.
Values are wire values: never renumber, only add.
"""
from __future__ import annotations

from enum import IntEnum


class ProcessState(IntEnum):
    """Lifecycle of a managed process on an agent (see lotc/agent/lifecycle.py)."""

    NONE = 0  # no state yet (an event's old_state before the first start)
    STARTING = 1  # spawned, not yet confirmed running (or READY=1 not yet seen)
    RUNNING = 2
    STOPPED = 3  # suspended with SIGSTOP; watchdog paused
    EXITED = 4  # ended and will not be restarted (clean exit, or terminated on request)
    FAILED = 5  # gave up: restart limit reached, or could not be spawned
    BACKOFF = 6  # ended, waiting before the next restart


class DesiredState(IntEnum):
    """What the admin asked a process to be; the server reconciles toward it."""

    RUNNING = 1
    STOPPED = 2  # suspended
    EXITED = 3  # terminated or killed on request


class RestartPolicy(IntEnum):
    ALWAYS = 1
    ON_FAILURE = 2
    NEVER = 3


class Action(IntEnum):
    """What a console command or a schedule does to a process."""

    START = 1
    STOP = 2  # SIGSTOP the process group
    RESUME = 3  # SIGCONT
    TERMINATE = 4  # SIGTERM, then SIGKILL after the grace period
    KILL = 5  # SIGKILL or a named signal
    RESTART = 6


class BundleKind(IntEnum):
    FILE = 1  # a single file, stored as is
    TAR = 2  # a directory tree, sent as an uncompressed tar archive


class Role(IntEnum):
    AGENT = 1
    ADMIN = 2


class ScheduleKind(IntEnum):
    CRON = 1
    AT = 2


class StreamKind(IntEnum):
    STDOUT = 1
    STDERR = 2


class EventKind(IntEnum):
    PROCESS_STATE = 1  # a process changed state
    LIVENESS_MISSED = 2  # watchdog deadline passed: process terminated
    SCHEDULE_FIRED = 3
    SCHEDULE_MISSED = 4  # a fire time passed while the agent was down
    AGENT_ONLINE = 5
    AGENT_OFFLINE = 6
    BUNDLE_STORED = 7
    BUNDLE_REMOVED = 8
    CLOCK_SYNC = 9
    ERROR = 10
    OUT_OF_MEMORY = 11  # the kernel killed a process for its --memory limit (issue 16)
    HEALTH = 12  # a process's health check verdict changed (issue 17)
