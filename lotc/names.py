"""Names of agents, admins, bundles and processes: one rule, checked at the boundary.

Names end up in file names on the nodes, in SQL rows and in console
tables, so they are kept to a small safe alphabet: 1-64 characters of
letters, digits, '.', '_' and '-', not starting with '.' or '-' (a name
such as '..' or '-rf' would be a trap for paths and command lines).
"""
from __future__ import annotations

import re

from lotc.errors import InvalidRequest

__all__ = ["MAX_NAME_LENGTH", "is_valid_name", "validate_name"]

MAX_NAME_LENGTH = 64
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,63}")


def is_valid_name(value: str) -> bool:
    return isinstance(value, str) and _NAME.fullmatch(value) is not None


def validate_name(kind: str, value: str) -> str:
    """Return `value` if it is a valid name, else raise InvalidRequest in plain words.

    `kind` says what the name is for ("agent", "bundle", "process"...), so the
    message reads "invalid process name ...".
    """
    if is_valid_name(value):
        return value
    if not value:
        raise InvalidRequest(f"{kind} name is empty")
    if len(value) > MAX_NAME_LENGTH:
        raise InvalidRequest(f"{kind} name is {len(value)} characters long; "
                             f"the limit is {MAX_NAME_LENGTH}")
    raise InvalidRequest(
        f"invalid {kind} name {value!r}: use letters, digits, '.', '_' and '-' "
        f"(not starting with '.' or '-')"
    )
