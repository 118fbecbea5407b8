"""The reference codec: construct's own interpreted parser and builder.

Slow, but it is construct reading the spec directly, so it is what the fast
path (protocol/_fastcodec.py) is proven against. It applies the same framing
rules as protocol/codec.py: the header is checked field by field, the body must
be consumed exactly (TRAILING_BYTES otherwise) and enum values must belong to
their enum. It does not reject bool bytes other than 0 and 1 (construct reads
them as True); the fast path does, and the property tests show that this is
the only kind of body it rejects beyond these rules.
"""
from __future__ import annotations

import io
from functools import cache
from typing import Any

import construct as c

from protocol import messages, spec, walk
from protocol.codec import EncodeError, Frame
from protocol.errors import ErrorCode, ProtocolError
from protocol.messages import Message
from protocol.spec import MessageType
from protocol.walk import Kind, Node

# Everything construct's interpreted parser raises on bad input.
PARSE_ERRORS = (c.ConstructError, UnicodeDecodeError, ValueError)


@cache
def body_node(message_type: MessageType) -> Node:
    return walk.body(message_type)


@cache
def compiled(message_type: MessageType) -> c.Construct:
    """construct's compiled body parser/builder (for benchmarks: unsafe on untrusted bytes)."""
    return spec.BODIES[message_type].compile()


def to_construct(node: Node, value: Any) -> Any:
    """A message value as construct's builder wants it (dicts, lists, ints)."""
    if node.kind is Kind.STRUCT:
        return {child.name: to_construct(child, getattr(value, child.name)) for child in node.fields}
    if node.kind is Kind.ARRAY:
        assert node.element is not None
        return [to_construct(node.element, item) for item in value]
    if node.kind is Kind.ENUM:
        assert node.enum is not None
        return int(node.enum(value))  # ValueError for a value outside the enum
    return value


def from_construct(node: Node, value: Any) -> Any:
    """construct's parse result as message objects; ValueError for an unknown enum value."""
    if node.kind is Kind.STRUCT:
        cls = getattr(messages, node.struct_name)
        return cls(**{child.name: from_construct(child, value[child.name]) for child in node.fields})
    if node.kind is Kind.ARRAY:
        assert node.element is not None
        return tuple(from_construct(node.element, item) for item in value)
    if node.kind is Kind.ENUM:
        assert node.enum is not None
        return node.enum(int(value))
    return value


def encode_body(body: Message) -> bytes:
    try:
        return spec.BODIES[body.TYPE].build(to_construct(body_node(body.TYPE), body))
    except (c.ConstructError, ValueError, TypeError, AttributeError, OverflowError) as exc:
        raise EncodeError(f"cannot encode {body.__class__.__name__}: {exc}") from exc


def encode(body: Message, request_id: int = 0, more: bool = False) -> bytes:
    data = encode_body(body)
    header = {"version": spec.VERSION, "type": int(body.TYPE),
              "flags": int(spec.FrameFlag.MORE) if more else 0,
              "request_id": request_id, "body_length": len(data)}
    try:
        return spec.HEADER.build(header) + data
    except c.ConstructError as exc:
        raise EncodeError(f"cannot encode the header: {exc}") from exc


def parse_body(message_type: MessageType, body: bytes) -> tuple[Any, int]:
    """construct's raw parse of a body and the bytes it consumed; raises PARSE_ERRORS."""
    stream = io.BytesIO(body)
    parsed = spec.BODIES[message_type].parse_stream(stream)
    return parsed, stream.tell()


def decode_body(message_type: int, body: bytes) -> Message:
    if message_type not in MessageType._value2member_map_:
        raise ProtocolError(f"unknown message type {message_type}", ErrorCode.UNKNOWN_MESSAGE_TYPE)
    mt = MessageType(message_type)
    try:
        parsed, used = parse_body(mt, body)
    except PARSE_ERRORS as exc:
        raise ProtocolError(f"malformed {mt.name} body: {exc}", ErrorCode.MALFORMED_BODY) from exc
    if used != len(body):
        raise ProtocolError(f"{len(body) - used} bytes after the body", ErrorCode.TRAILING_BYTES)
    try:
        result: Message = from_construct(body_node(mt), parsed)
    except ValueError as exc:
        raise ProtocolError(f"malformed {mt.name} body: {exc}", ErrorCode.MALFORMED_BODY) from exc
    return result


def decode(data: bytes, max_body: int = spec.DEFAULT_MAX_BODY) -> Frame:
    """Exactly one whole frame: header checks in the decoder's order, then the body."""
    if len(data) < spec.HEADER_SIZE:
        raise ProtocolError("truncated header", ErrorCode.MALFORMED_BODY)
    try:
        header = spec.HEADER.parse(data[: spec.HEADER_SIZE])
    except c.ConstError as exc:
        raise ProtocolError(f"bad magic: {exc}", ErrorCode.BAD_MAGIC) from exc
    if header.version != spec.VERSION:
        raise ProtocolError(f"unsupported version {header.version}", ErrorCode.UNSUPPORTED_VERSION)
    if not isinstance(header.type, str):  # construct's Enum parses unknown values to plain ints
        raise ProtocolError(f"unknown message type {header.type}", ErrorCode.UNKNOWN_MESSAGE_TYPE)
    if header.body_length > max_body:
        raise ProtocolError("oversize frame", ErrorCode.OVERSIZE_FRAME)
    body = data[spec.HEADER_SIZE:]
    if len(body) < header.body_length:
        raise ProtocolError("truncated frame", ErrorCode.MALFORMED_BODY)
    if len(body) > header.body_length:
        raise ProtocolError("bytes after the frame", ErrorCode.TRAILING_BYTES)
    message = decode_body(int(header.type), body)
    return Frame(message, header.request_id, bool(header.flags.MORE))
