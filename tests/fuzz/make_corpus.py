"""Write the seed corpus of tests/fuzz/fuzz_decoder.py into tests/fuzz/corpus/.

    .venv/bin/python tests/fuzz/make_corpus.py          # (re)write the files
    .venv/bin/python tests/fuzz/make_corpus.py --check  # exit 1 if they are stale

Each file is one harness input: a control byte (see fuzz_decoder.py) and a stream.

- valid-NN-NAME.bin: one frame of every message type. Field values come from
  walking the spec (as tests/protocol_strategies.py does) with a `random.Random`
  seeded by the type's name, not from hypothesis, whose choices for a given seed
  change between its releases: rerunning gives identical files, and so the
  staleness test in test_fuzz_harness.py only fails when the spec changes.
- stream-*.bin: several frames, as a connection carries them.
- bad-*.bin: streams the decoder must reject (or hold, when truncated); the
  outcome each one must have is checked here whenever the corpus is generated.
"""
from __future__ import annotations

import random
import struct
import sys
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `protocol` and `tests` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from protocol import messages, walk
from protocol.codec import encode
from protocol.errors import ErrorCode
from protocol.messages import Message
from protocol.spec import DEFAULT_MAX_BODY, HEADER_SIZE, MessageType
from protocol.walk import Kind, Node
from tests.fuzz.fuzz_decoder import (
    MAX_BODIES,
    SEED_CORPUS,
    fast_outcome,
    make_input,
    parse_input,
)
from tests.protocol_strategies import encoded_stream

ALPHABET = "abcxyz019-_./ é☃𝄞"  # one to four UTF-8 bytes per character
Expected = ErrorCode | None  # the error the stream must end with, None: no error


def example(node: Node, rng: random.Random) -> Any:
    """A value for `node`, drawn from `rng` across the field's wire range."""
    kind, bits = node.kind, 8 * (node.size or 0)
    if kind is Kind.UINT:
        return rng.choice((0, 1, 2**bits - 1, rng.getrandbits(bits)))
    if kind is Kind.SINT:
        return rng.choice((0, -1, -(2 ** (bits - 1)), 2 ** (bits - 1) - 1,
                           rng.getrandbits(bits) - 2 ** (bits - 1)))
    if kind is Kind.FLOAT:
        value = rng.choice((0.0, -2.5, float("inf"), rng.uniform(-1e9, 1e9)))
        return struct.unpack(">f", struct.pack(">f", value))[0]  # float32-representable
    if kind is Kind.BOOL:
        return rng.random() < 0.5
    if kind is Kind.ENUM:
        assert node.enum is not None
        return rng.choice(list(node.enum))
    if kind is Kind.BYTES:
        return rng.randbytes(node.size or 0)
    if kind is Kind.BLOB:
        return rng.randbytes(rng.randint(0, 16))
    if kind is Kind.STRING:
        return "".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 8)))
    if kind is Kind.ARRAY:
        assert node.element is not None
        return tuple(example(node.element, rng) for _ in range(rng.randint(1, 2)))
    if kind is Kind.STRUCT:
        cls = getattr(messages, node.struct_name)
        return cls(**{child.name: example(child, rng) for child in node.fields})
    raise TypeError(f"no example for {kind}")


def message(message_type: MessageType) -> Message:
    """The example body of `message_type` (the same on every run)."""
    body: Message = example(walk.body(message_type), random.Random(f"lotc {message_type.name}"))
    return body


def frame(message_type: MessageType, request_id: int = 0, more: bool = False) -> bytes:
    return encode(message(message_type), request_id, more)


def with_length(raw: bytes, length: int) -> bytes:
    """`raw` (one frame) with the header's body length replaced."""
    return raw[:10] + struct.pack(">I", length) + raw[HEADER_SIZE:]


def valid() -> dict[str, tuple[bytes, Expected]]:
    return {
        f"valid-{int(mt):02d}-{mt.name}": (make_input(frame(mt, int(mt), int(mt) % 2 == 1)), None)
        for mt in MessageType
    }


def streams() -> dict[str, tuple[bytes, Expected]]:
    m = MessageType
    chunks = [(messages.BundleChunk(offset=i * 5, data=bytes(range(i, i + 5))), 7, False)
              for i in range(3)]
    bundle = encoded_stream([(message(m.BUNDLE_BEGIN), 7, False), *chunks,
                             (messages.BundleEnd(size=15), 7, False)]) + frame(m.OK, 7)
    every = b"".join(frame(mt, n) for n, mt in enumerate(MessageType))
    return {
        "stream-handshake": (make_input(b"".join(
            frame(mt, 1) for mt in (m.HELLO, m.CHALLENGE, m.AUTH, m.WELCOME)), 0, 1), None),
        "stream-bundle-upload": (make_input(bundle, 0, 2), None),
        "stream-reply-more": (make_input(encoded_stream(
            [(message(m.PROCESS_LIST), 9, True)] * 2 + [(message(m.PROCESS_LIST), 9, False)]),
            0, 3), None),
        "stream-heartbeats": (make_input(b"".join(frame(m.HEARTBEAT, n) for n in range(6)), 0, 4),
                              None),
        "stream-every-type": (make_input(every, 0, 5), None),
        "stream-partial-last": (make_input(frame(m.OK, 1) + frame(m.EVENT, 2)[:-3], 0, 6), None),
    }


def bad() -> dict[str, tuple[bytes, Expected]]:
    m = MessageType
    ok, hb = frame(m.OK, 3), frame(m.HEARTBEAT, 4)
    query_logs = encode(messages.QueryLogs(follow=True), 5)
    token_create = encode(messages.TokenCreate(name="n"), 6)
    text = encode(messages.Ok(message="zz"), 8)
    return {
        "bad-magic": (make_input(b"XY" + ok[2:]), ErrorCode.BAD_MAGIC),
        "bad-version": (make_input(ok[:2] + b"\x02" + ok[3:]), ErrorCode.UNSUPPORTED_VERSION),
        "bad-type-0": (make_input(ok[:3] + b"\x00" + ok[4:]), ErrorCode.UNKNOWN_MESSAGE_TYPE),
        "bad-type-255": (make_input(hb + ok[:3] + b"\xff" + ok[4:]),
                         ErrorCode.UNKNOWN_MESSAGE_TYPE),
        "bad-oversize-header": (make_input(with_length(hb, DEFAULT_MAX_BODY + 1)[:HEADER_SIZE]),
                                ErrorCode.OVERSIZE_FRAME),
        "bad-oversize-limit-40": (make_input(ok + frame(m.PROC_START), MAX_BODIES.index(40)),
                                  ErrorCode.OVERSIZE_FRAME),
        "bad-truncated-header": (make_input(ok + hb[:7]), None),
        "bad-truncated-body": (make_input(hb[:-1], 0, 7), None),
        "bad-short-body": (make_input(with_length(hb, len(hb) - HEADER_SIZE - 1)[:-1]),
                           ErrorCode.MALFORMED_BODY),
        "bad-string-past-body": (make_input(with_length(text, 3)[:HEADER_SIZE + 3]),
                                 ErrorCode.MALFORMED_BODY),
        "bad-trailing-byte": (make_input(with_length(hb, len(hb) - HEADER_SIZE + 1) + b"\x00"),
                              ErrorCode.TRAILING_BYTES),
        "bad-bool-2": (make_input(query_logs[:-1] + b"\x02"), ErrorCode.MALFORMED_BODY),
        "bad-enum-255": (make_input(token_create[:HEADER_SIZE] + b"\xff" +
                                    token_create[HEADER_SIZE + 1:]), ErrorCode.MALFORMED_BODY),
        "bad-utf8": (make_input(text.replace(b"zz", b"\xff\xfe")), ErrorCode.MALFORMED_BODY),
        "bad-garbage-after-frames": (make_input(ok + hb + b"GARBAGE-GARBAGE", 0, 8),
                                     ErrorCode.BAD_MAGIC),
    }


def corpus() -> dict[str, bytes]:
    """File name -> contents; fails if an input does not end as its entry says."""
    files: dict[str, bytes] = {}
    for name, (data, expected) in {**valid(), **streams(), **bad()}.items():
        stream, max_body, _ = parse_input(data)
        code = fast_outcome([stream], max_body)[1]
        assert code is expected, f"{name}: expected {expected}, the decoder says {code}"
        files[f"{name}.bin"] = data
    return files


def stale(directory: Path = SEED_CORPUS) -> list[str]:
    """Why `directory` differs from `corpus()`: one line per file; empty when it does not."""
    want = corpus()
    have = {path.name: path.read_bytes() for path in directory.iterdir()} \
        if directory.is_dir() else {}
    problems = [f"missing: {name}" for name in sorted(want.keys() - have.keys())]
    problems += [f"differs: {name}" for name in sorted(want) if name in have
                 and have[name] != want[name]]
    problems += [f"not generated (add it to make_corpus.py or delete it): {name}"
                 for name in sorted(have.keys() - want.keys())]
    return problems


def main(argv: list[str]) -> int:
    if "--check" in argv:
        problems = stale()
        for line in problems:
            print(f"{SEED_CORPUS}: {line}")
        return 1 if problems else 0
    SEED_CORPUS.mkdir(parents=True, exist_ok=True)
    for name, data in corpus().items():
        path = SEED_CORPUS / name
        if not path.exists() or path.read_bytes() != data:
            path.write_bytes(data)
            print(f"wrote {path.relative_to(SEED_CORPUS.parents[2])}")
    for line in stale():
        print(f"{SEED_CORPUS}: {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
