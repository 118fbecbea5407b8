"""The generated fast codec agrees with construct's interpreted parser and builder.

For every message type, with field values generated from the spec:
- fast encode gives exactly the bytes construct builds;
- fast decode gives exactly what construct parses (converted to the dataclass);
- decode(encode(m)) == m, through the stream decoder too;
- for mutated, truncated and extended bodies the fast path rejects whatever
  construct rejects; it rejects more only for the documented reasons: bytes
  after the last field, an enum value outside its enum, a bool byte other
  than 0 or 1.
"""
from __future__ import annotations

from typing import Any

import construct as c
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from protocol import reference, spec, walk
from protocol.codec import Frame, FrameDecoder, decode_body, encode, encode_reference
from protocol.errors import ErrorCode, ProtocolError
from protocol.spec import HEADER_SIZE, MessageType
from protocol.walk import Kind
from tests.protocol_strategies import message_strategy

ALL_TYPES = list(MessageType)
PER_TYPE = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
HAS_BOOL = {mt for mt in MessageType if any(n.kind is Kind.BOOL for n in walk.body(mt).walk())}
HAS_FLOAT = {mt for mt in MessageType if any(n.kind is Kind.FLOAT for n in walk.body(mt).walk())}


def test_no_message_has_both_bools_and_floats() -> None:
    # The rebuild check in `_extra_rejection_reasons` relies on it: construct does not
    # preserve NaN payload bits on rebuild, but no body with a bool has a float.
    assert not HAS_BOOL & HAS_FLOAT


@pytest.mark.parametrize("message_type", ALL_TYPES, ids=lambda mt: mt.name)
@PER_TYPE
@given(data=st.data())
def test_fast_path_equals_construct(message_type: MessageType, data: st.DataObject) -> None:
    body = data.draw(message_strategy(message_type))
    request_id = data.draw(st.integers(0, 2**32 - 1))
    more = data.draw(st.booleans())
    frame = encode(body, request_id, more)
    assert frame == encode_reference(body, request_id, more)
    raw = frame[HEADER_SIZE:]
    assert decode_body(message_type, raw) == reference.decode_body(message_type, raw) == body
    assert FrameDecoder().feed(frame) == [Frame(body, request_id, more)]
    assert reference.decode(frame) == Frame(body, request_id, more)


def _mutate(data: st.DataObject, raw: bytes) -> bytes:
    how = data.draw(st.sampled_from(["truncate", "extend", "flip", "overwrite", "insert", "delete"]))
    if how == "truncate":
        return raw[: data.draw(st.integers(0, max(len(raw) - 1, 0)))]
    if how == "extend":
        return raw + data.draw(st.binary(min_size=1, max_size=8))
    if not raw:
        return data.draw(st.binary(min_size=1, max_size=8))
    at = data.draw(st.integers(0, len(raw) - 1))
    if how == "flip":
        return raw[:at] + bytes([raw[at] ^ data.draw(st.integers(1, 255))]) + raw[at + 1:]
    if how == "overwrite":  # hits length and count prefixes with arbitrary values
        patch = data.draw(st.binary(min_size=1, max_size=4))
        return raw[:at] + patch + raw[at + len(patch):]
    if how == "insert":
        return raw[:at] + data.draw(st.binary(min_size=1, max_size=4)) + raw[at:]
    return raw[:at] + raw[at + data.draw(st.integers(1, 4)):]


def _extra_rejection_reasons(mt: MessageType, raw: bytes, parsed: Any, used: int) -> set[str]:
    """Why the fast path may reject a body that construct's parser accepted."""
    reasons = set()
    if used != len(raw):
        reasons.add("trailing")  # construct stops at the last field and ignores the rest
    try:
        reference.from_construct(walk.body(mt), parsed)
    except ValueError:
        reasons.add("enum")  # construct parses an unknown enum value to a plain int
    if mt in HAS_BOOL and spec.BODIES[mt].build(parsed) != raw[:used]:
        reasons.add("bool")  # construct reads any non-zero byte as True
    return reasons


@pytest.mark.parametrize("message_type", ALL_TYPES, ids=lambda mt: mt.name)
@PER_TYPE
@given(data=st.data())
def test_fast_path_rejects_what_construct_rejects(
    message_type: MessageType, data: st.DataObject
) -> None:
    raw = _mutate(data, encode(data.draw(message_strategy(message_type)))[HEADER_SIZE:])
    try:
        parsed, used = reference.parse_body(message_type, raw)
    except reference.PARSE_ERRORS:
        event("construct rejects")
        with pytest.raises(ProtocolError) as rejected:
            decode_body(message_type, raw)
        assert rejected.value.code == ErrorCode.MALFORMED_BODY
        return
    reasons = _extra_rejection_reasons(message_type, raw, parsed, used)
    try:
        fast = decode_body(message_type, raw)
    except ProtocolError as exc:
        assert reasons, f"fast path rejected a body construct accepts: {exc}"
        event(f"only the fast path rejects: {sorted(reasons)}")
        if reasons == {"trailing"}:
            assert exc.code == ErrorCode.TRAILING_BYTES
        else:
            assert exc.code in (ErrorCode.MALFORMED_BODY, ErrorCode.TRAILING_BYTES)
        return
    assert not reasons, f"fast path accepted a body it should reject: {reasons}"
    event("both accept")
    # repr, not ==: a mutated float may be NaN, which is not equal to itself.
    assert repr(fast) == repr(reference.from_construct(walk.body(message_type), parsed))


@pytest.mark.parametrize("message_type", ALL_TYPES, ids=lambda mt: mt.name)
@settings(max_examples=10, deadline=None)
@given(data=st.data())
def test_compiled_construct_agrees_on_valid_bodies(
    message_type: MessageType, data: st.DataObject
) -> None:
    # The benchmark quotes construct's compiled parser; on valid input it must agree.
    raw = encode(data.draw(message_strategy(message_type)))[HEADER_SIZE:]
    compiled = reference.compiled(message_type).parse(raw)
    assert reference.from_construct(walk.body(message_type), compiled) == decode_body(
        message_type, raw
    )


def test_bool_bytes_other_than_0_and_1_are_rejected() -> None:
    from protocol.messages import QueryEvents

    raw = bytearray(encode(QueryEvents(pattern="a", follow=True))[HEADER_SIZE:])
    raw[-1] = 2
    assert reference.parse_body(MessageType.QUERY_EVENTS, bytes(raw))[0].follow is True
    with pytest.raises(ProtocolError) as rejected:
        decode_body(MessageType.QUERY_EVENTS, bytes(raw))
    assert rejected.value.code == ErrorCode.MALFORMED_BODY


def test_construct_compiled_parser_is_lenient_so_we_never_use_it_on_input() -> None:
    # REFERENCE.md: a compiled Prefixed does not check that the bytes match the prefix.
    truncated = b"\x00\x05ab"
    with pytest.raises(c.ConstructError):
        spec.Str.parse(truncated)
    with pytest.raises(ProtocolError):
        decode_body(MessageType.OK, truncated)
