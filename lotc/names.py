"""Names of agents, admins, bundles and processes: one rule, checked at the boundary.

Names end up in file names on the nodes, in SQL rows and in console
tables, so they are kept to a small safe alphabet: 1-64 characters of
letters, digits, '.', '_' and '-', not starting with '.' or '-' (a name
such as '..' or '-rf' would be a trap for paths and command lines).

An AGENT word (a selector) is a name, a glob (`web-*`, fnmatch's syntax) or
`all`. Globs come from admins, so what one costs is bounded: at most
MAX_GLOB_LENGTH characters, compiled for the request that uses it and
never kept by us. (fnmatch keeps 32,768 compiled patterns: 200 distinct
globs of 30 KB grew the server by 76 MB. re's own cache keeps at most 512;
with globs this short, that is at most about 4 MB, measured with the
costliest shapes.)
"""
from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable

from lotc.errors import InvalidRequest

__all__ = ["ALL", "MAX_GLOB_LENGTH", "MAX_NAME_LENGTH", "glob_matcher", "is_glob",
           "is_valid_name", "validate_name", "validate_selector", "validate_sha_prefix"]

MAX_NAME_LENGTH = 64
# Room for a class per character of the longest name (`[a-z0-9]...`): longer is no name's glob.
MAX_GLOB_LENGTH = 256
ALL = "all"
_GLOB_CHARACTERS = frozenset("*?[")
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,63}")
_SHA_PREFIX = re.compile(r"[0-9a-fA-F]{0,64}")


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


def is_glob(selector: str) -> bool:
    """True when `selector` is a pattern rather than one agent's name."""
    return not _GLOB_CHARACTERS.isdisjoint(selector)


def validate_selector(selector: str) -> str:
    """Return `selector` (a name, a glob or 'all') unless it is longer than any could be."""
    kind, limit = ("glob", MAX_GLOB_LENGTH) if is_glob(selector) else ("name", MAX_NAME_LENGTH)
    if len(selector) > limit:
        raise InvalidRequest(f"agent {kind} is {len(selector)} characters long; "
                             f"the limit is {limit}")
    return selector


def glob_matcher(pattern: str) -> Callable[[str], bool]:
    """`fnmatch.fnmatchcase(name, pattern)` as a function of name, without fnmatch's cache."""
    match = re.compile(fnmatch.translate(validate_selector(pattern))).match
    return lambda name: match(name) is not None


def validate_sha_prefix(text: str) -> str:
    """The start of a SHA-256 in hex (`rollback BUNDLE SHA`), lowercase; "" stays ""."""
    if _SHA_PREFIX.fullmatch(text) is None:
        raise InvalidRequest(f"{text[:70]!r}: give the first hex digits of a SHA-256")
    return text.lower()
