"""Domain errors. Each names its wire code; `error_for_code` maps back.

Raise these anywhere below the servers; the servers turn them into ERROR
frames with `str(exc)` as the message, and clients turn ERROR frames back
into the same classes, so a message reads the same at every hop.
"""
from __future__ import annotations

from typing import ClassVar

from protocol.errors import ErrorCode, LotcError, ProtocolError

__all__ = [
    "AgentOffline",
    "AuthFailed",
    "BadBundle",
    "BundleInUse",
    "ChecksumMismatch",
    "Conflict",
    "InternalError",
    "InvalidRequest",
    "InvalidState",
    "LotcError",
    "NotAllowed",
    "ProtocolError",
    "RequestTimeout",
    "SpawnFailed",
    "StorageFull",
    "TokenRevoked",
    "TooLarge",
    "UnknownAgent",
    "UnknownBundle",
    "UnknownProcess",
    "UnknownSchedule",
    "error_for_code",
]


class AuthFailed(LotcError):
    code: ClassVar[ErrorCode] = ErrorCode.AUTH_FAILED


class TokenRevoked(LotcError):
    code: ClassVar[ErrorCode] = ErrorCode.TOKEN_REVOKED


class NotAllowed(LotcError):
    code: ClassVar[ErrorCode] = ErrorCode.NOT_ALLOWED


class UnknownAgent(LotcError):
    code: ClassVar[ErrorCode] = ErrorCode.UNKNOWN_AGENT


class AgentOffline(LotcError):
    code: ClassVar[ErrorCode] = ErrorCode.AGENT_OFFLINE


class UnknownBundle(LotcError):
    code: ClassVar[ErrorCode] = ErrorCode.UNKNOWN_BUNDLE


class UnknownProcess(LotcError):
    code: ClassVar[ErrorCode] = ErrorCode.UNKNOWN_PROCESS


class Conflict(LotcError):
    code: ClassVar[ErrorCode] = ErrorCode.CONFLICT


class InvalidRequest(LotcError):
    code: ClassVar[ErrorCode] = ErrorCode.INVALID_REQUEST


class BundleInUse(LotcError):
    code: ClassVar[ErrorCode] = ErrorCode.BUNDLE_IN_USE


class BadBundle(LotcError):
    code: ClassVar[ErrorCode] = ErrorCode.BAD_BUNDLE


class ChecksumMismatch(LotcError):
    code: ClassVar[ErrorCode] = ErrorCode.CHECKSUM_MISMATCH


class TooLarge(LotcError):
    code: ClassVar[ErrorCode] = ErrorCode.TOO_LARGE


class InvalidState(LotcError):
    code: ClassVar[ErrorCode] = ErrorCode.INVALID_STATE


class SpawnFailed(LotcError):
    code: ClassVar[ErrorCode] = ErrorCode.SPAWN_FAILED


class UnknownSchedule(LotcError):
    code: ClassVar[ErrorCode] = ErrorCode.UNKNOWN_SCHEDULE


class RequestTimeout(LotcError):
    code: ClassVar[ErrorCode] = ErrorCode.TIMEOUT


class StorageFull(LotcError):
    code: ClassVar[ErrorCode] = ErrorCode.STORAGE_FULL


class InternalError(LotcError):
    code: ClassVar[ErrorCode] = ErrorCode.INTERNAL


def _by_code() -> dict[int, type[LotcError]]:
    table: dict[int, type[LotcError]] = {}
    for name in __all__:
        cls = globals().get(name)
        if isinstance(cls, type) and issubclass(cls, LotcError) and cls is not LotcError:
            table.setdefault(int(cls.code), cls)
    return table


_ERROR_CLASSES = _by_code()


def error_for_code(code: int, message: str) -> LotcError:
    """Rebuild the exception a peer reported in an ERROR frame."""
    if 100 <= code < 200:
        try:
            return ProtocolError(message, ErrorCode(code))
        except ValueError:
            return ProtocolError(message)
    cls = _ERROR_CLASSES.get(code, InternalError)
    return cls(message)
