"""Enrolling and revoking tokens from the console (the CLI uses the model directly)."""
from __future__ import annotations

from lotc.errors import InvalidRequest
from lotc.names import validate_name
from lotc.server.command_context import CommandContext
from lotc.server.decisions import Close, Link
from protocol.enums import Role
from protocol.messages import Ok, Token


def create_token(ctl: CommandContext, role: Role, name: str) -> Token:
    validate_name("agent" if role == Role.AGENT else "admin", name)
    return Token(token=ctl.store.create_token(role, name, ctl.now_us()))


def revoke_token(ctl: CommandContext, name: str, asker: Link | None = None,
                 asker_name: str = "") -> tuple[Ok, list[Close]]:
    """Revoke `name`'s token: the reply, and the connections to cut off before it is sent.

    An admin revoking their own token (`asker_name == name`) gets OK: its own
    connection is spared here and closed by the caller once the OK is sent.
    """
    if not ctl.store.revoke_token(name, ctl.now_us()):
        raise InvalidRequest(f"no live token named {name!r}")
    own = asker is not None and asker_name == name
    closes = ctl.cut_off(name, spare=asker if own else None)
    message = f"revoked {name}" + (f"; closed {len(closes)} connection(s)" if closes else "")
    if own:
        message += "; this was your own token: this session ends now"
    return Ok(message=message), closes
