"""Domain errors. Each names its wire code; `error_for_code` maps back.

Raise these anywhere below the servers; the servers turn them into ERROR
frames with `error_reply` (the one place an error becomes a frame: it truncates
the message so the reply can always be encoded), and clients turn ERROR frames
back into the same classes, so a message reads the same at every hop.
"""
from __future__ import annotations

from typing import ClassVar

from protocol.errors import (
    ErrorCode,
    LocalProtocolError,
    LotcError,
    ProtocolError,
    RemoteProtocolError,
)
from protocol.messages import Error

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
    "LocalProtocolError",
    "LotcError",
    "NotAllowed",
    "ProtocolError",
    "RemoteProtocolError",
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
    "error_reply",
    "wire_text",
]

# An error message a human reads; it also fits any string field (16-bit length prefix).
MAX_ERROR_BYTES = 1000
CUT_MARK = "... ({} bytes cut)"


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


def wire_text(text: str, limit: int = MAX_ERROR_BYTES) -> str:
    """`text`, cut to at most `limit` UTF-8 bytes (saying how much was cut)."""
    data = text.encode("utf-8", "replace")
    if len(data) <= limit:
        return text
    mark = CUT_MARK.format(len(data))  # an upper bound of what is cut: stays short
    kept = data[:limit - len(mark.encode())].decode("utf-8", "ignore")  # whole characters
    return kept + CUT_MARK.format(len(data) - len(kept.encode()))


def error_reply(exc: LotcError) -> Error:
    """The ERROR frame body for `exc`: always encodable, however long its message."""
    return Error(code=exc.code, message=wire_text(str(exc)))


def _by_code() -> dict[int, type[LotcError]]:
    table: dict[int, type[LotcError]] = {}
    for name in __all__:
        cls = globals().get(name)
        if (isinstance(cls, type) and issubclass(cls, LotcError) and cls is not LotcError
                and not issubclass(cls, ProtocolError)):
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
