"""Fuzz the stream decoder with mutated streams of valid frames and with random bytes.

Invariants: only ProtocolError escapes; the decoder never holds more than
HEADER_SIZE + max_body bytes; the result does not depend on how the stream was
split; and the outcome (frames, or the error code) matches a stream decoder
built on construct's interpreted parser, except where the fast path's stricter
bool check applies.
"""
from __future__ import annotations

import struct
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from protocol import reference, spec, walk
from protocol.codec import Frame
from protocol.errors import ErrorCode, ProtocolError
from protocol.spec import HEADER_SIZE, MessageType
from protocol.walk import Kind
from tests.fuzz.fuzz_decoder import Outcome, canonical, fast_outcome
from tests.protocol_strategies import encoded_stream, frames, split_points

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
HAS_BOOL = {int(mt) for mt in MessageType
            if any(n.kind is Kind.BOOL for n in walk.body(mt).walk())}


def reference_outcome(data: bytes, max_body: int) -> tuple[Outcome, list[int]]:
    """Frame by frame with construct's parser; also the message types it saw."""
    got: list[Frame] = []
    types: list[int] = []
    pos = 0
    while len(data) - pos >= HEADER_SIZE:
        length = struct.unpack_from(">I", data, pos + 10)[0]
        types.append(data[pos + 3])
        end = pos + HEADER_SIZE + length
        if end > len(data) and length <= max_body and data[pos:pos + 3] == b"LT\x01" and \
                data[pos + 3] in MessageType._value2member_map_:
            break  # a valid header whose body has not all arrived
        try:
            got.append(reference.decode(data[pos:end], max_body))
        except ProtocolError as exc:
            return (got, exc.code), types
        pos = end
    return (got, None), types


def comparable(outcome: Outcome) -> tuple[Any, ErrorCode | None]:
    """`outcome` with NaN equal to NaN: a mutated float can decode to one."""
    return canonical(outcome[0]), outcome[1]


def mutate(data: st.DataObject, stream: bytes) -> bytes:
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(0, len(stream)))
        how = data.draw(st.sampled_from(["flip", "insert", "delete", "overwrite"]))
        patch = data.draw(st.binary(min_size=1, max_size=6))
        if how == "flip" and at < len(stream):
            patch = bytes([stream[at] ^ patch[0]])
            stream = stream[:at] + patch + stream[at + 1:]
        elif how == "insert":
            stream = stream[:at] + patch + stream[at:]
        elif how == "delete":
            stream = stream[:at] + stream[at + len(patch):]
        else:
            stream = stream[:at] + patch + stream[at + len(patch):]
    return stream


@FUZZ
@given(items=st.lists(frames(), min_size=1, max_size=5), data=st.data(),
       max_body=st.sampled_from([64, 512, spec.DEFAULT_MAX_BODY]))
def test_mutated_streams(items: list, data: st.DataObject, max_body: int) -> None:
    stream = mutate(data, encoded_stream(items))
    whole = comparable(fast_outcome([stream], max_body))
    pieces = comparable(fast_outcome(data.draw(split_points(stream)), max_body))
    # Byte by byte, every frame completes in its own feed: nothing is dropped with an error.
    exact = comparable(fast_outcome([stream[i:i + 1] for i in range(len(stream))], max_body))
    # However the stream is split: the same error, and a prefix of the same frames.
    assert whole[1] == pieces[1] == exact[1]
    assert pieces[0] == exact[0][: len(pieces[0])]
    assert whole[0] == (exact[0] if exact[1] is None else ())
    event(f"outcome: {exact[1].name if exact[1] else 'ok'}")
    ref, ref_types = reference_outcome(stream, max_body)
    ref = comparable(ref)
    if exact != ref:
        n = len(exact[0])
        assert exact[0] == ref[0][:n] and exact[1] is ErrorCode.MALFORMED_BODY
        if ref[1] is ErrorCode.TRAILING_BYTES and len(ref[0]) == n:
            return  # one body with several faults: which one is reported first may differ
        # Otherwise only the stricter bool check may make the fast path stop before construct.
        assert ref_types[n] in HAS_BOOL


@FUZZ
@given(prefix=st.sampled_from([b"", b"LT", b"LT\x01", b"LT\x01\x0a"]),
       chunks=st.lists(st.binary(max_size=64), max_size=8),
       max_body=st.sampled_from([0, 14, 100]))
def test_random_bytes(prefix: bytes, chunks: list[bytes], max_body: int) -> None:
    got, code = fast_outcome([prefix, *chunks], max_body)
    assert code is None or isinstance(code, ErrorCode)
    assert all(isinstance(frame, Frame) for frame in got)
