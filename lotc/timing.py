"""The timing contract of a link, in one place: from beat intervals to silence limits.

Theory of operation
-------------------
THE rule (`silence_limit_s`): a side whose peer beats every `interval` presumes the
link dead after `missed` intervals without a frame. Both ends apply it, from the
same numbers, which the server owns and sends:

- clients beat every WELCOME.heartbeat_ms (`--heartbeat`); the server closes a
  client silent for its limit: an agent's is `heartbeat x missed`, a console's that
  plus `upload_idle_s` (a console may pause mid-upload);
- the server beats each client every `ping_s` (`--ping-interval`). To an agent the
  pings ride on the agent's own frames, so one may come a heartbeat late: a client
  presumes the server dead after `missed` periods of `ping + heartbeat`;
- TIMING, the first frame after WELCOME to a client that announces "timing",
  carries heartbeat, ping, missed and the client's own limit. A client without it
  (an older one) gets nothing new; a client of an older server, which sends no
  TIMING, keeps the limit it always had (LEGACY_*).
- After the server closes a silent agent's connection it waits `offline_grace_s`
  more before it calls the agent offline, so a short blip never flaps the verdict.

Timeline for an agent whose frames stop at t = 0 (defaults: heartbeat 1 s, ping 5 s,
3 missed, grace 2 s, verdict tick 0.25 s):

    0 ..... 3 s ............... 5 s ............ 8 s ............. 18 s
    last    silence limit:      AGENT_OFFLINE    backstop: a read   and the other way:
    frame   connection closed   (limit + grace)  loop no hub serves an agent or console
            (+ <= 1 verdict tick)                gives up           hearing nothing from
                                                                    the server gives up
                                                                    ((5 + 1) x 3)
Pure: no I/O, no clock.
"""
from __future__ import annotations

from dataclasses import dataclass

from protocol.enums import Role
from protocol.messages import Timing

CAPABILITY = "timing"  # a client announcing it in HELLO gets TIMING after WELCOME


def silence_limit_s(interval_s: float, missed: int) -> float:
    """THE rule: a link whose peer beats every `interval_s` is dead after `missed` beats."""
    return interval_s * missed


@dataclass(frozen=True)
class ServerTiming:
    """The server's numbers (its flags) and the limits it applies to its clients."""

    heartbeat_s: float  # clients beat this often (WELCOME.heartbeat_ms)
    missed: int
    offline_grace_s: float
    upload_idle_s: float  # a console may pause this long mid-upload
    ping_s: float = 5.0  # the server beats each client this often

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

    def silence_limit_for(self, role: Role) -> float:
        return self.agent_silence_limit_s if role == Role.AGENT else self.console_silence_limit_s

    def message_for(self, role: Role) -> Timing:
        """The TIMING a client of `role` is sent right after WELCOME."""
        return Timing(heartbeat_ms=_ms(self.heartbeat_s), ping_ms=_ms(self.ping_s),
                      missed=min(self.missed, 255),
                      silence_limit_ms=_ms(self.silence_limit_for(role)))

    def link(self, role: Role) -> LinkTiming:
        """What a client of `role` learns from its TIMING (in whole milliseconds)."""
        return LinkTiming.from_message(self.message_for(role))


def _ms(seconds: float) -> int:
    return min(round(seconds * 1000), 2**32 - 1)


@dataclass(frozen=True)
class LinkTiming:
    """A client's view of the contract, from the server's TIMING."""

    heartbeat_s: float
    ping_s: float
    missed: int
    silence_limit_s: float  # the server closes this client's link after this much silence

    @classmethod
    def from_message(cls, timing: Timing) -> LinkTiming:
        """The contract a TIMING states; ValueError, saying why, for numbers that make none."""
        if timing.ping_ms <= 0 or timing.missed <= 0:
            raise ValueError(f"TIMING with ping {timing.ping_ms} ms and {timing.missed} "
                             "missed beats gives no silence limit")
        return cls(timing.heartbeat_ms / 1000, timing.ping_ms / 1000, timing.missed,
                   timing.silence_limit_ms / 1000)

    @property
    def server_silence_limit_s(self) -> float:
        """How long the client waits for any frame from the server before it gives up:
        `missed` of the server's beat periods, a period being a ping plus one of the
        client's heartbeats (a ping to an agent rides on the agent's next frame)."""
        return silence_limit_s(self.ping_s + self.heartbeat_s, self.missed)


# The clients' limits for the server's silence when the server sends no TIMING (a
# server older than TIMING): what each client always did.
LEGACY_CONSOLE_SERVER_SILENCE_S = 30.0


def legacy_agent_server_silence_s(heartbeat_s: float) -> float:
    """An agent's wait for any frame from a server that sent no TIMING."""
    return max(heartbeat_s * 15, 15.0)
