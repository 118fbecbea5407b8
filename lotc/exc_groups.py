"""What a trio nursery's ExceptionGroup is really about.

A nursery wraps what its tasks raise in (possibly nested) ExceptionGroups, even when a
single task failed; callers that report errors in plain words, or catch `LotcError`,
want that one exception back as itself.
"""
from __future__ import annotations

__all__ = ["leaves", "lone_error"]


def lone_error(exc: BaseException) -> BaseException:
    """The one exception inside nested single-member ExceptionGroups, else `exc` itself."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def leaves(exc: BaseException) -> list[BaseException]:
    """Every non-group exception inside `exc`, depth first (just [exc] for a plain one)."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in leaves(inner)]
    return [exc]
