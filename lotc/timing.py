"""The timing contract of a link, in one place: from beat intervals to silence limits.

Theory of operation
-------------------
Each side of a link beats (sends a HEARTBEAT) at an interval; the other side
presumes the link dead after `missed` intervals without a frame. Clients beat
every WELCOME.heartbeat_ms; the server pings every `ping_s`. After the
server closes a silent agent's connection it waits `offline_grace_s` more
before it calls the agent offline, so a short blip never flaps the verdict.

Timeline for an agent whose frames stop at t = 0 (defaults: heartbeat 1 s,
3 missed, grace 2 s, verdict tick 0.25 s):

    0 ........ silence limit (3 s) ........ offline (5 s) ... backstop (8 s)
    last frame  connection closed            AGENT_OFFLINE     read loop gives up
                (+ up to one verdict tick)                     (only if the verdict
                                                                loop did not act)
Pure: no I/O, no clock.
"""
from __future__ import annotations

from dataclasses import dataclass


def silence_limit_s(interval_s: float, missed: int) -> float:
    """THE rule: a link whose peer beats every `interval_s` is dead after `missed` beats."""
    return interval_s * missed


@dataclass(frozen=True)
class ServerTiming:
    heartbeat_s: float  # clients beat this often (WELCOME.heartbeat_ms)
    missed: int
    offline_grace_s: float
    upload_idle_s: float  # a console may pause this long mid-upload

    @property
    def agent_silence_limit_s(self) -> float:
        """An agent connection silent this long is closed (the verdict loop)."""
        return silence_limit_s(self.heartbeat_s, self.missed)

    @property
    def offline_after_s(self) -> float:
        """Silence after which an agent is declared offline (plus one verdict tick)."""
        return self.agent_silence_limit_s + self.offline_grace_s

    @property
    def backstop_s(self) -> float:
        """A read loop's own deadline, for when the verdict loop has not closed it."""
        return self.agent_silence_limit_s * 2 + self.offline_grace_s

    @property
    def console_silence_limit_s(self) -> float:
        """A console silent this long is cut off: its beats plus room for an upload pause."""
        return self.agent_silence_limit_s + self.upload_idle_s


# The clients' timers for the server's silence. The server pings every 5 s by default
# (agents get their pings riding on their own frames, so a ping may wait one beat more).
# Until the server sends its numbers (issue 15 item 4, TIMING: not done yet), each
# client keeps its historic rule, here so that there is one place to change.
CONSOLE_SERVER_SILENCE_S = 30.0


def agent_server_silence_s(heartbeat_s: float) -> float:
    """How long an agent waits for any frame from the server before it reconnects."""
    return max(heartbeat_s * 15, 15.0)
