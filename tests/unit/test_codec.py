"""protocol.codec: framing, the stream decoder, errors, and the generated modules."""
from __future__ import annotations

import dataclasses
import struct
import typing

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import fastgen, messages, msggen, walk
from protocol.codec import (
    EncodeError,
    Frame,
    FrameDecoder,
    decode_body,
    decode_reference,
    encode,
    encode_reference,
)
from protocol.enums import Role
from protocol.errors import ErrorCode, LocalProtocolError, ProtocolError
from protocol.messages import (
    MESSAGE_CLASSES,
    BundleBegin,
    BundleChunk,
    Error,
    Heartbeat,
    Hello,
    LogLines,
    Message,
    NodeStats,
    Ok,
    ProcessStats,
    QueryEvents,
    StatsHistorySample,
    StatsReport,
)
from protocol.spec import HEADER_SIZE, MAGIC, VERSION, MessageType
from tests.protocol_strategies import encoded_stream, frames, split_points

HDR = struct.Struct(">2sBBHII")


def header(type_: int = MessageType.OK, length: int = 0, magic: bytes = MAGIC,
           version: int = VERSION, flags: int = 0, request_id: int = 0) -> bytes:
    return HDR.pack(magic, version, type_, flags, request_id, length)


# ---------------------------------------------------------------- message classes


def test_every_message_type_has_a_frozen_slotted_class_named_after_it() -> None:
    assert set(MESSAGE_CLASSES) == set(MessageType)
    for message_type, cls in MESSAGE_CLASSES.items():
        assert cls.__name__ == walk.camel(message_type.name)
        assert cls.TYPE is message_type
        assert issubclass(cls, Message)
        assert cls.__dataclass_params__.frozen  # type: ignore[attr-defined]
        assert "__slots__" in vars(cls)
        cls()  # every field has a default


def test_field_types_follow_the_spec() -> None:
    hints = typing.get_type_hints(StatsReport, vars(messages))
    assert hints == {"TYPE": typing.ClassVar[MessageType], "agent": str, "time_us": int,
                     "node": NodeStats, "processes": tuple[ProcessStats, ...]}
    assert typing.get_type_hints(Hello, vars(messages))["role"] is Role
    assert typing.get_type_hints(Error, vars(messages))["code"] is ErrorCode
    assert [f.name for f in dataclasses.fields(messages.StatsHistory)] == [
        "agent", "samples", "processes"]
    assert StatsHistorySample().node == NodeStats()


def test_decoded_objects_are_real_frozen_instances() -> None:
    sent = StatsReport(agent="a", processes=(ProcessStats(name="p"),))
    got = FrameDecoder().feed(encode(sent))[0]
    assert type(got) is Frame and type(got.body) is StatsReport
    assert type(got.body.processes[0]) is ProcessStats
    assert hash(got.body) == hash(sent) and got.body == sent
    with pytest.raises(dataclasses.FrozenInstanceError):
        got.body.agent = "b"  # type: ignore[misc]
    with pytest.raises(AttributeError):  # Frame is a NamedTuple: immutable too
        got.more = True  # type: ignore[misc]


@pytest.mark.parametrize("generator", [msggen, fastgen], ids=["messages.py", "_fastcodec.py"])
def test_generated_modules_are_up_to_date(generator: typing.Any) -> None:
    assert generator.main(["--check"]) == 0, f"regenerate with python -m {generator.MODULE}"
    assert "do not edit" in generator.TARGET.read_text()


# ---------------------------------------------------------------- framing


def test_heartbeat_frame_layout() -> None:
    frame = encode(Heartbeat(seq=7, time_us=-1, running=3), request_id=9, more=True)
    assert frame == HDR.pack(MAGIC, VERSION, MessageType.HEARTBEAT, 1, 9, 14) + struct.pack(
        ">IqH", 7, -1, 3)


def test_frame_defaults_and_reference_agree() -> None:
    frame = encode(Ok("hé"))
    assert frame == encode_reference(Ok("hé"))
    assert decode_reference(frame) == Frame(Ok("hé")) == Frame(Ok("hé"), 0, False)


@settings(max_examples=60, deadline=None)
@given(items=st.lists(frames(), max_size=8), data=st.data())
def test_a_stream_split_anywhere_decodes_to_the_same_frames(
    items: list[tuple[Message, int, bool]], data: st.DataObject
) -> None:
    stream = encoded_stream(items)
    decoder = FrameDecoder()
    got: list[Frame] = []
    for piece in data.draw(split_points(stream)):
        got += decoder.feed(piece)
    assert got == [Frame(body, rid, more) for body, rid, more in items]
    assert decoder.buffered == 0


def test_partial_frames_are_held_and_counted() -> None:
    frame = encode(Ok("hello"))
    decoder = FrameDecoder()
    assert decoder.feed(frame[:5]) == [] and decoder.buffered == 5
    assert decoder.feed(frame[5:-1]) == [] and decoder.buffered == len(frame) - 1
    assert decoder.feed(frame[-1:] + frame[:3]) == [Frame(Ok("hello"))]
    assert decoder.buffered == 3


def test_bytearray_and_memoryview_input() -> None:
    frame = encode(BundleChunk(offset=1, data=b"xyz"))
    assert FrameDecoder().feed(bytearray(frame)) == [Frame(BundleChunk(1, b"xyz"))]
    body = FrameDecoder().feed(memoryview(frame))[0].body
    assert isinstance(body, BundleChunk) and type(body.data) is bytes


# ---------------------------------------------------------------- decoding errors

BAD_UTF8 = header(MessageType.OK, 4) + b"\x00\x02\xff\xfe"
ERROR_CASES = {
    "bad magic": (header(magic=b"XX"), ErrorCode.BAD_MAGIC),
    "unsupported version": (header(version=2), ErrorCode.UNSUPPORTED_VERSION),
    "unknown message type": (header(type_=200), ErrorCode.UNKNOWN_MESSAGE_TYPE),
    "oversize frame, from its header alone": (header(length=1 << 30), ErrorCode.OVERSIZE_FRAME),
    "truncated string": (header(MessageType.OK, 3) + b"\x00\x05a", ErrorCode.MALFORMED_BODY),
    "fixed body too short": (header(MessageType.HEARTBEAT, 2) + b"\0\0", ErrorCode.MALFORMED_BODY),
    "bad UTF-8": (BAD_UTF8, ErrorCode.MALFORMED_BODY),
    "enum value outside its enum": (header(MessageType.ERROR, 4) + b"\x00\x07\x00\x00",
                                    ErrorCode.MALFORMED_BODY),
    "array count beyond the body": (header(MessageType.RESULTS, 2) + b"\xff\xff",
                                    ErrorCode.MALFORMED_BODY),
    "trailing bytes, variable body": (header(MessageType.OK, 3) + b"\x00\x00!",
                                      ErrorCode.TRAILING_BYTES),
    "trailing bytes, fixed body": (header(MessageType.CANCEL, 5) + b"\0\0\0\1!",
                                   ErrorCode.TRAILING_BYTES),
}


@pytest.mark.parametrize("data, code", ERROR_CASES.values(), ids=ERROR_CASES.keys())
def test_each_error_code(data: bytes, code: ErrorCode) -> None:
    decoder = FrameDecoder()
    with pytest.raises(ProtocolError) as raised:
        decoder.feed(data)
    assert raised.value.code == code
    assert decoder.buffered == 0
    with pytest.raises(ProtocolError) as again:  # poisoned: the stream cannot resynchronise
        decoder.feed(encode(Heartbeat()))
    assert again.value.code == code
    if code is not ErrorCode.OVERSIZE_FRAME:
        with pytest.raises(ProtocolError) as ref:
            decode_reference(data)
        assert ref.value.code == code


def test_oversize_is_refused_before_the_body_arrives() -> None:
    decoder = FrameDecoder(max_body=100)
    frame = encode(BundleChunk(data=b"x" * 200))
    with pytest.raises(ProtocolError) as raised:
        decoder.feed(frame[:HEADER_SIZE])
    assert raised.value.code == ErrorCode.OVERSIZE_FRAME
    assert FrameDecoder(max_body=100).feed(encode(BundleChunk(data=b"x" * 88))) != []


def test_frames_before_a_bad_one_in_the_same_feed_are_dropped_with_it() -> None:
    with pytest.raises(ProtocolError):
        FrameDecoder().feed(encode(Ok("fine")) + header(magic=b"no"))


@settings(max_examples=200, deadline=None)
@given(chunks=st.lists(st.binary(max_size=40), max_size=6), max_body=st.sampled_from([0, 16, 64]))
def test_random_bytes_raise_only_protocol_errors_and_stay_bounded(
    chunks: list[bytes], max_body: int
) -> None:
    decoder = FrameDecoder(max_body=max_body)
    for chunk in [header()[:3] + b"".join(chunks[:1]), *chunks]:
        try:
            decoder.feed(chunk)
        except ProtocolError:
            return
        assert decoder.buffered <= HEADER_SIZE + max_body


def test_decode_body_checks_the_type() -> None:
    with pytest.raises(ProtocolError) as raised:
        decode_body(99, b"")
    assert raised.value.code == ErrorCode.UNKNOWN_MESSAGE_TYPE
    assert decode_body(MessageType.OK, b"\x00\x01!") == Ok("!")
    chunk = decode_body(MessageType.BUNDLE_CHUNK, bytearray(encode(BundleChunk(data=b"z"))[14:]))
    assert isinstance(chunk, BundleChunk) and type(chunk.data) is bytes


def test_max_body_must_fit_the_length_field() -> None:
    with pytest.raises(ValueError):
        FrameDecoder(max_body=1 << 32)


# ---------------------------------------------------------------- encoding errors

ENCODE_CASES = {
    "string over its 16-bit prefix": Ok("x" * 65536),
    "multi-byte string over its prefix": Ok("é" * 32768),
    "negative unsigned": Heartbeat(seq=-1),
    "unsigned too large": Heartbeat(seq=1 << 32),
    "signed too large": Heartbeat(time_us=1 << 63),
    "int given a str": Heartbeat(seq="1"),  # type: ignore[arg-type]
    "value outside the enum": Error(code=7),  # type: ignore[arg-type]
    "fixed bytes too short": BundleBegin(sha256=b"x"),
    "fixed bytes not set": BundleBegin(),
    "str given bytes": Ok(b"x"),  # type: ignore[arg-type]
    "bytes given str": BundleChunk(data="x"),  # type: ignore[arg-type]
    "float out of float32 range": StatsReport(node=NodeStats(cpu_percent=1e300)),
    "array of the wrong element type": Hello(addresses=(1,)),  # type: ignore[arg-type]
    "unpaired surrogate": Ok("\udc80"),
}


@pytest.mark.parametrize("body", ENCODE_CASES.values(), ids=ENCODE_CASES.keys())
def test_unencodable_values_raise_encode_error(body: Message) -> None:
    with pytest.raises(EncodeError) as raised:
        encode(body)
    # Ours, not the peer's: a LocalProtocolError (INTERNAL), never a ProtocolError that
    # would make a handler close the peer's connection (issue 14 item 17).
    assert isinstance(raised.value, ValueError) and isinstance(raised.value, LocalProtocolError)
    assert not isinstance(raised.value, ProtocolError)
    assert raised.value.code == ErrorCode.INTERNAL
    with pytest.raises(EncodeError):
        encode_reference(body)


def test_encode_rejects_what_is_not_a_message_and_bad_request_ids() -> None:
    with pytest.raises(EncodeError, match="not a LOTC message"):
        encode("hello")  # type: ignore[arg-type]
    with pytest.raises(EncodeError):
        encode(Ok(), request_id=1 << 32)


def test_bool_fields_encode_truthiness_like_construct() -> None:
    assert encode(QueryEvents(follow=1)) == encode(QueryEvents(follow=True))  # type: ignore[arg-type]


def test_a_read_starting_with_a_fixed_frame_takes_the_shortcut_and_the_rest() -> None:
    """feed() tries the first frame's fixed-size framer before its loop; whatever follows
    that frame in the same read (another frame, a partial one, garbage) is still handled."""
    beat, more_beat = Heartbeat(seq=1), encode(Heartbeat(seq=2), 5, more=True)
    log = LogLines(agent="a", process="p", lines=("x",))
    decoder = FrameDecoder()
    assert decoder.feed(encode(beat, 4)) == [Frame(beat, 4, False)]
    assert decoder.feed(encode(beat) + encode(log, 9)) == [Frame(beat), Frame(log, 9)]
    assert decoder.feed(encode(beat) + more_beat[:5]) == [Frame(beat)]
    assert decoder.buffered == 5
    assert decoder.feed(more_beat[5:]) == [Frame(Heartbeat(seq=2), 5, True)]
    assert decoder.feed(more_beat[:20]) == [] and decoder.buffered == 20
    with pytest.raises(ProtocolError) as caught:
        FrameDecoder().feed(encode(beat) + b"XX" + encode(beat)[2:])
    assert caught.value.code is ErrorCode.BAD_MAGIC
