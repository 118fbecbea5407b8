"""Atheris (libFuzzer) harness for the stream decoder, `protocol.codec.FrameDecoder`.

The hypothesis tests in tests/fuzz/test_codec_fuzz.py run a few hundred examples
in every `make test`; this harness is for longer, coverage-guided runs. Its
one-input function `TestOneInput` needs nothing but the project, so
tests/fuzz/test_fuzz_harness.py runs it over the seed corpus in the suite.

Input layout
------------
Byte 0 is a control byte, the rest is the stream fed to the decoder:

- bits 0-1 choose `max_body` from `MAX_BODIES` (0 = the default limit);
- bits 2-7 seed the cut points of one of the three ways the stream is fed
  (the others are: in one piece, and byte by byte).

Invariants checked for every input (those of test_codec_fuzz.py):

- decoding raises nothing but `ProtocolError` (anything else is a crash);
- the decoder never holds more than HEADER_SIZE + max_body bytes;
- the outcome does not depend on how the stream was split: the same error code,
  and the frames of one split are a prefix of those decoded byte by byte;
- the decoded frames account for every byte but a partial last frame;
- every decoded frame re-encodes (`protocol.codec.encode`) to bytes that decode to
  an equal frame (float NaNs compare equal to each other here).

Running it
----------
atheris is not among the test dependencies (test_fuzz_harness.py runs it for a
moment only when it is installed). For this Python 3.11 on x86-64 Linux pip finds a
binary wheel (atheris 3.0.0), so no compiler is needed; where there is none, pip
builds it from source, which needs clang with libFuzzer::

    .venv/bin/python -m pip install atheris
    .venv/bin/python tests/fuzz/fuzz_decoder.py -max_total_time=60

A 60 s run does about 2,400 inputs a second (each decoded three ways).

With no corpus directory named, new inputs go to var/fuzz/corpus/ and the seed
corpus tests/fuzz/corpus/ is read too. Naming tests/fuzz/corpus/ first, as in
`fuzz_decoder.py tests/fuzz/corpus/ -max_total_time=60`, would make libFuzzer write
into the checked-in corpus, so var/fuzz/corpus/ is put in front of it (except with
-merge=1, whose first directory is meant as the output). Any other libFuzzer flag
passes through (-runs=N, -max_len=N, -jobs=N, ...).

A crash (an exception other than ProtocolError, or a failed invariant) prints the
Python traceback and leaves the input in var/fuzz/crash-<sha1> (the
`-artifact_prefix`, unless one is given; timeouts and OOMs land there too as
timeout-*/oom-*). Reproduce it with `fuzz_decoder.py var/fuzz/crash-<sha1>`; once
fixed, add it to the bad() streams of tests/fuzz/make_corpus.py so the suite keeps it.
The seed corpus is generated: `python tests/fuzz/make_corpus.py`.
"""
from __future__ import annotations

import dataclasses
import gc
import math
import random
import struct
import sys
import types
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # run as a script: `protocol` and `tests` live at the root
    sys.path.insert(0, str(ROOT))

from protocol.codec import Frame, FrameDecoder, encode
from protocol.errors import ErrorCode, ProtocolError
from protocol.spec import DEFAULT_MAX_BODY, HEADER_SIZE

MAX_BODIES = (DEFAULT_MAX_BODY, 256, 40, 0)
SEED_CORPUS = ROOT / "tests" / "fuzz" / "corpus"
WORK_DIR = ROOT / "var" / "fuzz"
MAX_PIECE = 2 * HEADER_SIZE + 3  # cut sizes 0..MAX_PIECE: headers and bodies get split
Outcome = tuple[list[Frame], ErrorCode | None]


def make_input(stream: bytes, max_body_index: int = 0, split_seed: int = 0) -> bytes:
    """The harness input that feeds `stream` with those options (see the module doc)."""
    assert 0 <= max_body_index < len(MAX_BODIES) and 0 <= split_seed < 64
    return bytes([split_seed << 2 | max_body_index]) + stream


def parse_input(data: bytes) -> tuple[bytes, int, int]:
    """(stream, max_body, split_seed) of a harness input."""
    control = data[0] if data else 0
    return data[1:], MAX_BODIES[control & 3], control >> 2


def cut(stream: bytes, seed: int) -> list[bytes]:
    """`stream` in pieces of 0..MAX_PIECE bytes, chosen by `seed` (empty pieces included)."""
    rng = random.Random(seed)
    pieces, pos = [], 0
    while pos < len(stream):
        size = rng.randint(0, MAX_PIECE)
        pieces.append(stream[pos:pos + size])
        pos += size
    return pieces


def fast_outcome(pieces: list[bytes], max_body: int) -> Outcome:
    """Feed `pieces` to one decoder: the frames decoded and the error code, if any."""
    decoder = FrameDecoder(max_body)
    got: list[Frame] = []
    for piece in pieces:
        try:
            got += decoder.feed(piece)
        except ProtocolError as exc:
            return got, exc.code
        assert decoder.buffered <= HEADER_SIZE + max_body
    return got, None


def canonical(value: Any) -> Any:
    """`value` with dataclasses as tuples and NaN as a marker: comparable with ==."""
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return (type(value).__name__,
                *(canonical(getattr(value, f.name)) for f in dataclasses.fields(value)))
    if isinstance(value, tuple | list):
        return tuple(canonical(item) for item in value)
    return value


def TestOneInput(data: bytes) -> None:
    """Check the invariants for one harness input; raises on a violation."""
    stream, max_body, seed = parse_input(data)
    whole = fast_outcome([stream], max_body)
    pieces = fast_outcome(cut(stream, seed), max_body)
    exact = fast_outcome([stream[i:i + 1] for i in range(len(stream))], max_body)
    # Byte by byte every frame completes in its own feed, so none is dropped with an error.
    frames, code = canonical(exact[0]), exact[1]
    assert whole[1] == pieces[1] == code, (whole[1], pieces[1], code)
    assert canonical(pieces[0]) == frames[: len(pieces[0])]
    assert canonical(whole[0]) == (frames if code is None else ())
    check_reencoding(stream, exact[0], max_body, complete=code is None)


def check_reencoding(stream: bytes, frames: list[Frame], max_body: int, complete: bool) -> None:
    consumed = 0
    for frame in frames:
        raw = encode(frame.body, frame.request_id, frame.more)
        again = FrameDecoder(max_body).feed(raw)
        assert canonical(again) == (canonical(frame),), (frame, again)
        consumed += len(raw)
    assert consumed <= len(stream)
    rest = len(stream) - consumed
    if complete and rest >= HEADER_SIZE:  # what is left must be one frame's beginning
        length = struct.unpack_from(">I", stream, consumed + 10)[0]
        assert rest < HEADER_SIZE + length, "a whole frame was left undecoded"


# ---------------------------------------------------------------- running under atheris


def _instrument_protocol(atheris: types.ModuleType) -> None:
    """Coverage for the `protocol` package only (instrument_all takes ~25 s: construct)."""
    for obj in gc.get_objects():
        if isinstance(obj, types.FunctionType) and \
                str(getattr(obj, "__module__", "")).partition(".")[0] == "protocol":
            atheris.instrument_func(obj)


def libfuzzer_args(argv: list[str]) -> list[str]:
    """argv with the defaults of the module doc: work corpus first, artifacts in var/fuzz."""
    program, rest = argv[:1], argv[1:]
    flags = [arg for arg in rest if arg.startswith("-")]
    paths = [arg for arg in rest if not arg.startswith("-")]
    if not any(flag.startswith("-artifact_prefix=") for flag in flags):
        flags.append(f"-artifact_prefix={WORK_DIR}/")
    merging = any(flag.startswith("-merge=") and flag != "-merge=0" for flag in flags)
    if not paths:
        paths = [str(WORK_DIR / "corpus"), str(SEED_CORPUS)]
    elif Path(paths[0]).resolve() == SEED_CORPUS and not merging:
        print(f"fuzz_decoder: new inputs go to {WORK_DIR / 'corpus'}, not the seed corpus",
              file=sys.stderr)
        paths.insert(0, str(WORK_DIR / "corpus"))
    return program + flags + paths


def main(argv: list[str] | None = None) -> None:
    import atheris  # only here: the suite runs TestOneInput without it

    args = libfuzzer_args(list(sys.argv if argv is None else argv))
    if f"-artifact_prefix={WORK_DIR}/" in args:
        WORK_DIR.mkdir(parents=True, exist_ok=True)
    paths = [arg for arg in args[1:] if not arg.startswith("-")]
    if not Path(paths[0]).is_file():  # a file is an input to rerun; a directory must exist
        Path(paths[0]).mkdir(parents=True, exist_ok=True)
    _instrument_protocol(atheris)
    atheris.Setup(args, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
