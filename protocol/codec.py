"""Frames to bytes and bytes to frames, sans I/O (in the manner of h11).

Theory of operation
-------------------
`encode(body, request_id, more)` returns the bytes of one frame. `FrameDecoder`
is fed whatever the transport delivered and returns the complete frames so
far, keeping any partial frame; how the stream was split does not matter.

The work is done by protocol/_fastcodec.py, generated from the spec by
protocol/fastgen.py. construct's own interpreted parser and builder stay
available as `decode_reference` / `encode_reference` (protocol/reference.py);
tests/unit/test_fastpath.py proves with hypothesis that both give identical
bytes and values and that the fast path rejects whatever construct rejects.

Errors
------
Decoding raises only `ProtocolError` (`RemoteProtocolError` where the codec decides;
the generated decoders raise the base class), with one of the codes BAD_MAGIC,
UNSUPPORTED_VERSION, UNKNOWN_MESSAGE_TYPE, OVERSIZE_FRAME (decided from the
header, so the body of an oversize frame is never buffered: the decoder holds at
most HEADER_SIZE + max_body bytes), MALFORMED_BODY (truncated field, bad UTF-8,
enum value outside its enum, bool byte other than 0 or 1) and TRAILING_BYTES
(body longer than its fields). Unknown header flag bits are ignored, as
construct's FlagsEnum does, so that flags can be added later. After an error the
decoder is poisoned: every later `feed` raises again, because the stream can no
longer be resynchronised and the connection is going to be closed. Frames that
arrived in the same `feed` before the bad one are dropped with it.

Encoding raises `EncodeError` (a `LocalProtocolError`, code INTERNAL, and a
`ValueError`; not a `ProtocolError`: the failure is ours, not the peer's) for a
value the wire cannot carry: a string longer than its
length prefix allows, an integer out of range, a value outside its enum, a
fixed-size bytes field of the wrong length, a wrong type. Nothing is truncated
or wrapped silently.
"""
from __future__ import annotations

import functools
import struct
from collections.abc import Callable
from typing import NoReturn, cast

from protocol import _fastcodec
from protocol.errors import ErrorCode, LocalProtocolError, ProtocolError, RemoteProtocolError
from protocol.frame import Frame
from protocol.message_types import (
    DEFAULT_MAX_BODY,
    HEADER_SIZE,
    MAGIC,
    VERSION,
    FrameFlag,
    MessageType,
)
from protocol.messages import Message

__all__ = [
    "EncodeError", "Frame", "FrameDecoder", "Message", "ProtocolError", "RemoteProtocolError",
    "decode_body",
    "decode_reference", "encode", "encode_reference", "wire_largest",
]


class EncodeError(LocalProtocolError, ValueError):
    """A message value that the wire format cannot carry."""


_tuple_new = tuple.__new__
_MORE = int(FrameFlag.MORE)
_PREFIX = MAGIC + bytes([VERSION])
# Magic and version read as one 3-byte string: one comparison per frame.
_unpack_header = struct.Struct(">3sBHII").unpack_from
_Decoder = Callable[[bytes, int, int], Message]
_ENCODERS = cast("dict[type, Callable[[Message, int, int], bytes]]", _fastcodec.ENCODERS)
# Indexed by the header's type byte: a tuple lookup, with None for unknown types.
_DECODERS: tuple[_Decoder | None, ...] = tuple(_fastcodec.DECODERS.get(value) for value in range(256))
_Framer = Callable[[bytes, int, int, list[Frame], int], int]
_FRAMERS = cast("dict[int, tuple[_Framer, int | None]]", _fastcodec.FRAMERS)
# What a generated decoder can raise on bad input besides ProtocolError itself.
_BODY_ERRORS = (struct.error, UnicodeDecodeError, LookupError, ValueError)
_ENCODE_ERRORS = (struct.error, TypeError, AttributeError, LookupError, ValueError, OverflowError)


def encode(body: Message, request_id: int = 0, more: bool = False) -> bytes:
    """The bytes of one frame carrying `body`; raises EncodeError for unencodable values."""
    try:
        return _ENCODERS[body.__class__](body, request_id, _MORE if more else 0)
    except _ENCODE_ERRORS as exc:
        raise _encode_error(body, exc) from exc


def _encode_error(body: object, exc: Exception) -> EncodeError:
    if body.__class__ not in _ENCODERS:
        return EncodeError(f"not a LOTC message: {body.__class__.__name__}")
    return EncodeError(f"cannot encode {body.__class__.__name__}: {exc}")


def decode_body(message_type: int, body: bytes | bytearray | memoryview) -> Message:
    """Decode one body of the given type; raises ProtocolError."""
    decoder = _DECODERS[message_type] if 0 <= message_type < 256 else None
    if decoder is None:
        raise RemoteProtocolError(f"unknown message type {message_type}", ErrorCode.UNKNOWN_MESSAGE_TYPE)
    if body.__class__ is not bytes:
        body = bytes(body)  # blob fields are slices of it: they must be bytes
    try:
        return decoder(body, 0, len(body))
    except _BODY_ERRORS as exc:
        raise _malformed(message_type, exc) from exc


def wire_largest(message_type: MessageType, field: str) -> int:
    """Largest value (or length, for strings, blobs, arrays) a top-level body field carries."""
    fields = _fastcodec.LARGEST.get(int(message_type), {})
    if field not in fields:
        raise KeyError(f"{MessageType(message_type).name} has no integer or prefixed field {field!r}")
    return fields[field]


def _malformed(message_type: int, exc: Exception) -> ProtocolError:
    name = MessageType(message_type).name
    return RemoteProtocolError(f"malformed {name} body: {exc}", ErrorCode.MALFORMED_BODY)


@functools.lru_cache(maxsize=8)
def _framers(max_body: int) -> tuple[_Framer | None, ...]:
    # Built once per limit, not per decoder: a server makes one decoder per connection,
    # and building this 256-entry table was most of a decoder's cost (bench.server_load).
    # A fixed body over the limit gets no framer (the general path refuses it); variable
    # framers check the header's length against max_body themselves.
    return tuple(
        entry[0] if entry is not None and (entry[1] is None or entry[1] <= max_body) else None
        for entry in map(_FRAMERS.get, range(256))
    )


class FrameDecoder:
    """Incremental frame decoder: `feed(bytes) -> [Frame]`; see the module docstring."""

    __slots__ = ("_buf", "_failed", "_framers", "_held", "max_body")

    def __init__(self, max_body: int = DEFAULT_MAX_BODY) -> None:
        if not 0 <= max_body <= 0xFFFFFFFF:
            raise ValueError(f"max_body must fit the 32-bit length field, got {max_body}")
        self.max_body = max_body
        self._buf = bytearray()  # at most one partial frame, between feeds
        self._failed: ProtocolError | None = None
        self._held = False  # a partial frame is buffered, or the stream failed: not the fast path
        # By type byte: the generated fast path (header and body decoded in place).
        self._framers: tuple[_Framer | None, ...] = _framers(max_body)

    @property
    def buffered(self) -> int:
        """Bytes held: the start of a frame not yet complete."""
        return len(self._buf)

    def feed(self, data: bytes | bytearray | memoryview) -> list[Frame]:
        """Frames completed by `data`, in order; raises ProtocolError (see the module doc)."""
        if self._held or data.__class__ is not bytes:
            return self._feed_buffered(data)
        frames: list[Frame] = []
        size = len(data)
        end = 0
        if size >= HEADER_SIZE:
            # The usual read, one whole frame, is decoded by its framer and returned with
            # no further set-up: that set-up was 5% of a heartbeat's round trip (bench.codec).
            framer = self._framers[data[3]]
            if framer is not None:
                try:
                    end = framer(data, 0, size, frames, self.max_body)
                except _BODY_ERRORS as exc:
                    self._fail(_malformed_frame(exc))
                if end == size:
                    return frames
        return self._feed_rest(data, max(end, 0), frames)  # -1: the general path decides

    def _feed_rest(self, data: bytes, pos: int, frames: list[Frame]) -> list[Frame]:
        """The frames from `pos` on, after the first (if its framer took it): see `feed`."""
        size = len(data)
        framers = self._framers
        max_body = self.max_body
        try:
            while size - pos >= HEADER_SIZE:
                framer = framers[data[pos + 3]]
                if framer is not None:
                    end = framer(data, pos, size, frames, max_body)
                    if end >= 0:
                        pos = end
                        continue  # else: incomplete or bad; the general path below decides
                prefix, message_type, flags, request_id, length = _unpack_header(data, pos)
                decoder = _DECODERS[message_type]
                if prefix != _PREFIX or decoder is None or length > max_body:
                    raise _header_error(prefix, message_type, length, max_body)
                end = pos + HEADER_SIZE + length
                if end > size:
                    break
                # One C call: Frame(...) would go through NamedTuple's Python __new__.
                body = decoder(data, pos + HEADER_SIZE, end)
                frames.append(_tuple_new(Frame, (body, request_id, flags & _MORE == _MORE)))
                pos = end
        except ProtocolError as exc:
            self._fail(exc)
        except _BODY_ERRORS as exc:
            self._fail(_malformed_frame(exc))
        if pos < size:
            self._buf = bytearray(data[pos:])  # one partial frame, its header already checked
            self._held = True
        return frames

    def _feed_buffered(self, data: bytes | bytearray | memoryview) -> list[Frame]:
        """A partial frame is held (or the input is not bytes): append, then parse as bytes."""
        if self._failed is not None:
            raise RemoteProtocolError(f"stream already failed: {self._failed}", self._failed.code)
        buf = self._buf
        buf += data
        self._held = True  # until the buffer is handed back to `feed` below
        if len(buf) < HEADER_SIZE:
            return []
        prefix, message_type, _, _, length = _unpack_header(buf, 0)
        valid = prefix == _PREFIX and _DECODERS[message_type] is not None and length <= self.max_body
        if valid and len(buf) < HEADER_SIZE + length:
            return []  # still incomplete: wait without copying (a big frame comes in pieces)
        self._buf = bytearray()
        self._held = False
        return self.feed(bytes(buf))

    def _fail(self, exc: ProtocolError) -> NoReturn:
        self._failed = exc
        self._held = True
        self._buf = bytearray()
        raise exc


def _malformed_frame(exc: Exception) -> ProtocolError:
    return RemoteProtocolError(f"malformed body: {exc}", ErrorCode.MALFORMED_BODY)


def _header_error(prefix: bytes, message_type: int, length: int, max_body: int) -> ProtocolError:
    magic, version = prefix[:2], prefix[2]
    if magic != MAGIC:
        return RemoteProtocolError(f"bad magic {magic!r}, expected {MAGIC!r}", ErrorCode.BAD_MAGIC)
    if version != VERSION:
        return RemoteProtocolError(
            f"unsupported protocol version {version}, expected {VERSION}",
            ErrorCode.UNSUPPORTED_VERSION,
        )
    if _DECODERS[message_type] is None:
        return RemoteProtocolError(
            f"unknown message type {message_type}", ErrorCode.UNKNOWN_MESSAGE_TYPE
        )
    return ProtocolError(
        f"frame body of {length} bytes exceeds the limit of {max_body}", ErrorCode.OVERSIZE_FRAME
    )


# ---------------------------------------------------------------- the reference path


def encode_reference(body: Message, request_id: int = 0, more: bool = False) -> bytes:
    """`encode` done by construct's interpreted builder (slow; for proofs and benchmarks)."""
    from protocol import reference

    return reference.encode(body, request_id, more)


def decode_reference(data: bytes, max_body: int = DEFAULT_MAX_BODY) -> Frame:
    """Decode exactly one whole frame with construct's interpreted parser."""
    from protocol import reference

    return reference.decode(data, max_body)
