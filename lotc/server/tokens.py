"""Enrolling and revoking tokens from the console (the CLI uses the model directly)."""
from __future__ import annotations

from lotc.errors import InvalidRequest
from lotc.names import validate_name
from lotc.net.framed import FramedStream
from lotc.server.controller import Controller
from protocol.enums import Role
from protocol.messages import Ok, Token


def create_token(ctl: Controller, role: Role, name: str) -> Token:
    validate_name("agent" if role == Role.AGENT else "admin", name)
    return Token(token=ctl.model.create_token(role, name, ctl.now_us()))


async def revoke_token(ctl: Controller, name: str, asker: FramedStream | None = None,
                       asker_name: str = "") -> Ok:
    """Revoke `name`'s token and cut off its connections.

    An admin revoking their own token (`asker_name == name`) gets OK: its own
    connection is spared here and closed by the caller once the OK is sent.
    """
    if not ctl.model.revoke_token(name, ctl.now_us()):
        raise InvalidRequest(f"no live token named {name!r}")
    own = asker is not None and asker_name == name
    cut = await ctl.cut_off(name, spare=asker if own else None)
    message = f"revoked {name}" + (f"; closed {cut} connection(s)" if cut else "")
    if own:
        message += "; this was your own token: this session ends now"
    return Ok(message=message)
