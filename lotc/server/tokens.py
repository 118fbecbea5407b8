"""Enrolling and revoking tokens from the console (the CLI uses the model directly)."""
from __future__ import annotations

from lotc.errors import InvalidRequest
from lotc.names import validate_name
from lotc.server.controller import Controller
from protocol.enums import Role
from protocol.messages import Ok, Token


def create_token(ctl: Controller, role: Role, name: str) -> Token:
    validate_name("agent" if role == Role.AGENT else "admin", name)
    return Token(token=ctl.model.create_token(role, name, ctl.now_us()))


async def revoke_token(ctl: Controller, name: str) -> Ok:
    if not ctl.model.revoke_token(name, ctl.now_us()):
        raise InvalidRequest(f"no live token named {name!r}")
    cut = await ctl.cut_off(name)
    return Ok(message=f"revoked {name}" + (f"; closed {cut} connection(s)" if cut else ""))
