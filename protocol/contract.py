"""The one checker of the CONTRACT (protocol/message_types.py): may this frame come now?

Theory of operation
-------------------
CONTRACT says, per message type, which legs (agent -> server, console -> server,
server -> agent, server -> console) may carry it in each phase of a link
(HANDSHAKE until WELCOME, then AUTHENTICATED). This module turns it once, at
import, into one frozenset of message types per (leg, phase), so a receiver's check
is a set lookup (the agent server checks 10,000 frames a second). `check` refuses a
frame the table does not allow with UNEXPECTED_MESSAGE, which the receiver answers
with ERROR and a closed link. Every receiver uses it: the handshakes on both sides,
the agent server, the admin server, the agent's read loop and the console's receive
loop. Pure: no I/O.
"""
from __future__ import annotations

from protocol.enums import Role
from protocol.errors import ErrorCode, RemoteProtocolError
from protocol.message_types import CONTRACT, Leg, MessageType, Phase

SENDER_WORDS = {
    Leg.AGENT_TO_SERVER: "an agent", Leg.ADMIN_TO_SERVER: "a console",
    Leg.SERVER_TO_AGENT: "the server (to an agent)",
    Leg.SERVER_TO_ADMIN: "the server (to a console)",
}
PHASE_WORDS = {Phase.HANDSHAKE: "during the handshake", Phase.AUTHENTICATED: "after WELCOME"}

# The legs of a client's link, by the role it logs in as: (client -> server, server -> client).
LEGS_OF: dict[Role, tuple[Leg, Leg]] = {
    Role.AGENT: (Leg.AGENT_TO_SERVER, Leg.SERVER_TO_AGENT),
    Role.ADMIN: (Leg.ADMIN_TO_SERVER, Leg.SERVER_TO_ADMIN),
}

ALLOWED: dict[tuple[Leg, Phase], frozenset[MessageType]] = {
    (leg, phase): frozenset(mt for mt, rule in CONTRACT.items() if leg in rule.legs(phase))
    for leg in Leg for phase in Phase
}


def allowed(leg: Leg, phase: Phase) -> frozenset[MessageType]:
    """The message types `leg` may carry in `phase` (what a receiver dispatches on)."""
    return ALLOWED[leg, phase]


def may_send(leg: Leg, phase: Phase, message_type: MessageType) -> bool:
    return message_type in ALLOWED[leg, phase]


def check(leg: Leg, phase: Phase, message_type: MessageType) -> None:
    """Raise the table's refusal unless `leg` may carry `message_type` in `phase`."""
    if message_type not in ALLOWED[leg, phase]:
        raise refusal(leg, phase, message_type)


def refusal(leg: Leg, phase: Phase, message_type: MessageType) -> RemoteProtocolError:
    """The error for a frame the table does not allow, saying who may send it and when."""
    return RemoteProtocolError(
        f"{SENDER_WORDS[leg]} may not send {message_type.name} {PHASE_WORDS[phase]} "
        f"(allowed: {describe(message_type)})", ErrorCode.UNEXPECTED_MESSAGE)


def describe(message_type: MessageType) -> str:
    """One line of the table in words, e.g. "console → server, server → agent (after WELCOME)"."""
    rule = CONTRACT[message_type]
    parts = []
    for phase in Phase:
        legs = [leg.value for leg in Leg if leg in rule.legs(phase)]
        if len(legs) == len(Leg):
            legs = ["every leg"]
        if legs:
            parts.append(f"{', '.join(legs)} ({PHASE_WORDS[phase]})")
    return "; ".join(parts)
