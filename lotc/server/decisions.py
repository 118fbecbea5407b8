"""What the controller decides must happen on a connection: small values, no I/O.

The controller (controller.py) returns these; the faces (agent_server.py,
admin_server.py) and the server's timed duties (duties.py) carry them out. So the
controller is tested with plain values, and what the server does to a peer is
read in one place (`carry_out`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from lotc.errors import LotcError


class Link(Protocol):
    """A peer's connection, as the controller holds it (a FramedStream in the server):
    an opaque handle it hands back in its decisions, never one it awaits."""

    async def send_error(self, error: LotcError) -> None: ...

    async def aclose(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Close:
    """Close `link`; tell the peer `error` first (None: close without a word)."""

    link: Link
    error: LotcError | None = None


@dataclass(frozen=True, slots=True)
class Ack:
    """Acknowledge the agent's events up to and including `seq` (EVENT_ACK)."""

    seq: int
