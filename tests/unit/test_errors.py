"""lotc.errors: one helper builds every error reply, and it always encodes."""
from __future__ import annotations

import pytest

from lotc.errors import (
    MAX_ERROR_BYTES,
    InternalError,
    InvalidRequest,
    LocalProtocolError,
    error_for_code,
    error_reply,
    wire_text,
)
from protocol.codec import EncodeError, FrameDecoder, encode
from protocol.errors import ErrorCode, ProtocolError
from protocol.messages import Error, ProcKill


@pytest.mark.parametrize("text", ["x" * 65_500, "é" * 40_000, "日本" * 30_000, "a" * 1001])
def test_a_long_message_is_cut_to_whole_characters_and_says_so(text: str) -> None:
    cut = wire_text(text)
    assert len(cut.encode()) <= MAX_ERROR_BYTES
    assert text.startswith(cut[:len(cut) - len("... (99999 bytes cut)") - 4])
    assert cut.endswith("bytes cut)")
    kept = cut[:cut.rindex("...")]
    assert f"({len(text.encode()) - len(kept.encode())} bytes cut)" in cut


def test_a_short_message_is_unchanged() -> None:
    assert wire_text("unknown signal 'SIGFOO'") == "unknown signal 'SIGFOO'"
    assert wire_text("x" * MAX_ERROR_BYTES) == "x" * MAX_ERROR_BYTES


def test_the_reply_to_an_error_quoting_a_huge_value_encodes_and_decodes() -> None:
    exc = InvalidRequest(f"unknown signal {'X' * 66_000!r}")
    with pytest.raises(EncodeError):  # what the server used to send, unencodable
        encode(Error(code=exc.code, message=str(exc)))
    (frame,) = FrameDecoder().feed(encode(error_reply(exc), 7))
    assert isinstance(frame.body, Error) and frame.request_id == 7
    assert frame.body.code == ErrorCode.INVALID_REQUEST
    assert frame.body.message.startswith("unknown signal 'XXX")


def test_our_encode_failure_is_local_not_the_peers_protocol_error() -> None:
    with pytest.raises(LocalProtocolError) as raised:
        encode(ProcKill(target="n1", name="p", signal="X" * 70_000, grace_ms=0))
    assert not isinstance(raised.value, ProtocolError)
    assert raised.value.code == ErrorCode.INTERNAL
    assert isinstance(error_for_code(int(ErrorCode.INTERNAL), "x"), InternalError)
    assert isinstance(error_for_code(int(ErrorCode.MALFORMED_BODY), "x"), ProtocolError)
