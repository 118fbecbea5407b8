"""Error codes carried by ERROR frames, and the exception base that carries them.

Every exception LOTC turns into an ERROR frame derives from `LotcError` and
names its wire code at class level (as h2 and wsproto do); one table in
`lotc.errors` maps codes back to classes on the receiving side.
"""
from __future__ import annotations

from enum import IntEnum
from typing import ClassVar


class ErrorCode(IntEnum):
    OK = 0  # no error: used in per-agent RESULTS entries
    # 1xx: the frame itself is wrong; the connection is closed after the ERROR.
    BAD_MAGIC = 100
    UNSUPPORTED_VERSION = 101
    UNKNOWN_MESSAGE_TYPE = 102
    OVERSIZE_FRAME = 103
    MALFORMED_BODY = 104
    TRAILING_BYTES = 105
    UNEXPECTED_MESSAGE = 106  # a valid frame of the wrong type for the peer's role or state
    # 2xx: who you are.
    AUTH_FAILED = 200
    TOKEN_REVOKED = 201
    NOT_ALLOWED = 202
    # 3xx: the request cannot be done.
    UNKNOWN_AGENT = 300
    AGENT_OFFLINE = 301
    UNKNOWN_BUNDLE = 302
    UNKNOWN_PROCESS = 303
    CONFLICT = 304
    INVALID_REQUEST = 305
    BUNDLE_IN_USE = 306
    BAD_BUNDLE = 307
    CHECKSUM_MISMATCH = 308
    TOO_LARGE = 309
    INVALID_STATE = 310
    SPAWN_FAILED = 311
    UNKNOWN_SCHEDULE = 312
    TIMEOUT = 313
    STORAGE_FULL = 314
    # 5xx: our fault.
    INTERNAL = 500


class LotcError(Exception):
    """Base of every error that can travel in an ERROR frame."""

    code: ClassVar[ErrorCode] = ErrorCode.INTERNAL


class ProtocolError(LotcError):
    """The bytes received are not a valid LOTC frame; the connection must close.

    Always the peer's fault (h11's RemoteProtocolError): what we fail to encode
    ourselves is a LocalProtocolError, which is not a ProtocolError, so that no
    handler answers our own failure by closing the peer's connection.
    """

    code: ClassVar[ErrorCode] = ErrorCode.MALFORMED_BODY

    def __init__(self, message: str, code: ErrorCode = ErrorCode.MALFORMED_BODY) -> None:
        super().__init__(message)
        self.code = code  # type: ignore[misc]  # instances narrow the class default


class RemoteProtocolError(ProtocolError):
    """The peer sent bytes that are not LOTC (the decoder's errors): ERROR, then close."""


class LocalProtocolError(LotcError):
    """We tried to build a frame the wire cannot carry: our bug, never the peer's.

    Raised before any byte is sent, so the connection is intact: answer the
    request with an INTERNAL error and carry on.
    """

    code: ClassVar[ErrorCode] = ErrorCode.INTERNAL
