"""Who may send which message: the spec's SENDERS table, as a check.

Theory of operation
-------------------
protocol/spec.py's SENDERS names, per message type, the roles that may send it
("agent", "admin", "server"; "client" is agent or admin, "any" is all three).
This module reads that one table once, at import, into a set of message types
per role, and `check` refuses a frame whose type its sender's role may not send,
with the protocol's wire code for it (UNEXPECTED_MESSAGE: ERROR, then close).
Pure table work, sans I/O like the rest of protocol/ (as h11's _state.py).
"""
from __future__ import annotations

from enum import Enum

from protocol.errors import ErrorCode, RemoteProtocolError
from protocol.spec import SENDERS, MessageType


class Sender(Enum):
    AGENT = "agent"
    ADMIN = "admin"
    SERVER = "server"


# Words of the table that name several roles at once.
ALIASES: dict[str, frozenset[Sender]] = {
    "client": frozenset({Sender.AGENT, Sender.ADMIN}),
    "any": frozenset(Sender),
}


def roles_of(cell: str) -> frozenset[Sender]:
    """The roles a SENDERS cell names; ValueError for a word it does not know."""
    roles: set[Sender] = set()
    for word in (w.strip() for w in cell.split(",")):
        roles |= ALIASES.get(word) or {Sender(word)}
    return frozenset(roles)


ALLOWED: dict[Sender, frozenset[MessageType]] = {
    sender: frozenset(mt for mt, cell in SENDERS.items() if sender in roles_of(cell))
    for sender in Sender
}


def may_send(sender: Sender, message_type: MessageType) -> bool:
    return message_type in ALLOWED[sender]


def check(sender: Sender, message_type: MessageType) -> None:
    """Raise the table's refusal when `sender` may not send `message_type`."""
    if message_type not in ALLOWED[sender]:
        raise RemoteProtocolError(
            f"{sender.value}s may not send {message_type.name} "
            f"(sent by: {SENDERS[message_type]})", ErrorCode.UNEXPECTED_MESSAGE)
