"""Tokens that name their owner (DESIGN 7): `alice.<secret>`.

A token is its owner's name, a '.', and a random secret from
`secrets.token_urlsafe` (letters, digits, '_' and '-': never a '.'), so the
owner is everything before the last '.', even for names that contain dots.
The console and the agent read their login name from the token; `--name`
stays as a check. Tokens made before names were carried are bare secrets
(no '.'): they still log in, with the name given by `--name`.

Nothing changes on the wire: the HMAC key is SHA-256 of the whole token, as
before, and HELLO carries the name as it always did.
"""
from __future__ import annotations

import secrets

from lotc.errors import InvalidRequest
from lotc.names import is_valid_name

__all__ = ["SECRET_BYTES", "login_name", "new_token", "owner_of"]

SECRET_BYTES = 32
SEPARATOR = "."


def new_token(name: str) -> str:
    """A fresh token for `name` (a valid name: checked by the caller)."""
    return f"{name}{SEPARATOR}{secrets.token_urlsafe(SECRET_BYTES)}"


def owner_of(token: str) -> str | None:
    """The name a token carries, or None for a bare (older) token."""
    name, separator, secret = token.strip().rpartition(SEPARATOR)
    if not separator or not secret or not is_valid_name(name):
        return None
    return name


def login_name(token: str, given: str | None, *, kind: str, fallback: str = "") -> str:
    """The name to log in as: the token's owner, checked against `--name` (`given`).

    A bare token needs `given` (or `fallback`, the console's old default). `kind`
    ("admin", "agent") makes the messages read as the user thinks of it.
    """
    owner = owner_of(token)
    if owner is not None:
        if given and given != owner:
            raise InvalidRequest(
                f"--name {given!r} does not match the token, which belongs to {kind} "
                f"{owner!r}: drop --name, or use {given}'s token")
        return owner
    if given or fallback:
        return given or fallback
    raise InvalidRequest(
        f"this token does not name its {kind} (it was made by an older lotc): give --name, "
        f"or create a new token with `lotc token create --{kind} NAME`")
