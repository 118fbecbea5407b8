"""The atheris harness's one-input function over the seed corpus, and the corpus itself.

The corpus must cover every message type and match what make_corpus.py generates;
with atheris installed the real harness also runs for a few seconds.
"""
from __future__ import annotations

import importlib.util
import math
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from protocol.codec import encode
from protocol.errors import ErrorCode
from protocol.messages import StatsReport
from protocol.spec import MessageType
from tests.fuzz import make_corpus
from tests.fuzz.fuzz_decoder import (
    ROOT,
    SEED_CORPUS,
    TestOneInput,
    fast_outcome,
    libfuzzer_args,
    make_input,
    parse_input,
)

CORPUS = sorted(SEED_CORPUS.iterdir())


@pytest.mark.parametrize("path", CORPUS, ids=lambda path: path.name)
def test_one_input_on_the_corpus(path: Path) -> None:
    TestOneInput(path.read_bytes())


def test_corpus_covers_every_message_type() -> None:
    seen: set[MessageType] = set()
    for path in CORPUS:
        stream, max_body, _ = parse_input(path.read_bytes())
        seen |= {frame.body.TYPE for frame in fast_outcome([stream], max_body)[0]}
    assert set(MessageType) - seen == set()


def test_corpus_has_every_header_error() -> None:
    codes = set()
    for path in CORPUS:
        stream, max_body, _ = parse_input(path.read_bytes())
        codes.add(fast_outcome([stream], max_body)[1])
    assert {ErrorCode.BAD_MAGIC, ErrorCode.UNSUPPORTED_VERSION, ErrorCode.UNKNOWN_MESSAGE_TYPE,
            ErrorCode.OVERSIZE_FRAME, ErrorCode.MALFORMED_BODY, ErrorCode.TRAILING_BYTES,
            None} <= codes


def test_corpus_is_not_stale() -> None:
    problems = make_corpus.stale()
    assert not problems, "regenerate with python tests/fuzz/make_corpus.py:\n" + "\n".join(
        problems)


def test_make_corpus_is_deterministic() -> None:
    assert make_corpus.corpus() == make_corpus.corpus()


def test_one_input_catches_a_broken_invariant(monkeypatch: pytest.MonkeyPatch) -> None:
    """The harness is not vacuous: a decoder that loses a frame, or leaks an
    exception other than ProtocolError, fails it."""
    data = (SEED_CORPUS / "stream-heartbeats.bin").read_bytes()
    import protocol.codec

    real = protocol.codec.FrameDecoder.feed

    def drop_second(self: protocol.codec.FrameDecoder, piece: bytes) -> list:
        frames = real(self, piece)
        return [f for f in frames if f.request_id != 1]

    monkeypatch.setattr(protocol.codec.FrameDecoder, "feed", drop_second)
    with pytest.raises(AssertionError):
        TestOneInput(data)

    def leak(self: protocol.codec.FrameDecoder, piece: bytes) -> list:
        raise IndexError("boom")

    monkeypatch.setattr(protocol.codec.FrameDecoder, "feed", leak)
    with pytest.raises(IndexError):
        TestOneInput(data)


def test_one_input_handles_odd_inputs() -> None:
    for data in (b"", b"\x00", b"\xff", b"\x03LT\x01", make_input(b"LT\x01\x0a" + bytes(10), 3)):
        TestOneInput(data)


def test_one_input_takes_nan_as_equal_to_itself() -> None:
    # Random bytes decode to NaN floats: they must not count as a failed round trip.
    report = make_corpus.message(MessageType.STATS_REPORT)
    assert isinstance(report, StatsReport)
    nan = replace(report, node=replace(report.node, load1=math.nan))
    TestOneInput(make_input(encode(nan) * 2, 0, 9))


def test_libfuzzer_args_keep_the_seed_corpus_read_only() -> None:
    work = str(ROOT / "var" / "fuzz" / "corpus")
    args = libfuzzer_args(["prog", str(SEED_CORPUS), "-max_total_time=1"])
    assert args[1:] == ["-max_total_time=1", f"-artifact_prefix={ROOT}/var/fuzz/",
                        work, str(SEED_CORPUS)]
    assert libfuzzer_args(["prog"])[-2:] == [work, str(SEED_CORPUS)]
    merge = libfuzzer_args(["prog", "-merge=1", str(SEED_CORPUS), "/tmp/x"])
    assert merge[-2:] == [str(SEED_CORPUS), "/tmp/x"]


def test_bad_inputs_fail() -> None:
    # The bad-* inputs other than the truncated ones end in a ProtocolError.
    for path in CORPUS:
        if path.name.startswith("bad-") and "truncated" not in path.name:
            stream, max_body, _ = parse_input(path.read_bytes())
            code = fast_outcome([stream], max_body)[1]
            assert isinstance(code, ErrorCode), path.name


@pytest.mark.skipif(importlib.util.find_spec("atheris") is None, reason="atheris not installed")
def test_atheris_harness_runs(tmp_path: Path) -> None:
    """The real harness, 3000 inputs: it starts, reads the seed corpus and finds no crash."""
    work = tmp_path / "corpus"
    work.mkdir()
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "fuzz" / "fuzz_decoder.py"), str(work),
         str(SEED_CORPUS), "-runs=3000", f"-artifact_prefix={tmp_path}/",
         "-print_final_stats=1"],
        check=False, cwd=ROOT, capture_output=True, text=True, timeout=60,
        env={**os.environ, "PYTHONHASHSEED": "0"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Done" in proc.stderr and "stat::number_of_executed_units" in proc.stderr
    assert not list(tmp_path.glob("crash-*"))
