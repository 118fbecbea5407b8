"""The generated dissector, run by the real tshark over a capture of every message type.

The capture is written from bytes (tests/pcap_helpers.py): frames built by the
real codec for every message type, twice with different values, over IPv4 on
the agent port, IPv6 on the admin port and a third port reached by "Decode As";
one frame split inside its header, one inside its body, three frames in one
segment, and a segment ending half way through a frame. Then malformed frames,
each on its own connection. tshark dissects it with wireshark/lotc.lua and we
compare every field it shows with the value that was encoded, walking the same
spec nodes the generator walked.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from protocol import messages, walk
from protocol.codec import encode
from protocol.errors import ErrorCode
from protocol.messages import Message
from protocol.spec import DEFAULT_ADMIN_PORT, DEFAULT_AGENT_PORT, DEFAULT_MAX_BODY, MessageType
from protocol.walk import Kind, Node
from tests.pcap_helpers import (
    TSHARK,
    TSHARK_MISSING,
    Capture,
    Pairs,
    Sent,
    TcpFlow,
    keys_below,
    packets,
    run_tshark,
)

pytestmark = pytest.mark.skipif(TSHARK is None, reason=TSHARK_MISSING)
DECODE_AS_PORT = 9999


# ---------------------------------------------------------------- sample values


class Values:
    """Deterministic values for every field kind, cycling through edge cases."""

    def __init__(self, seed: int) -> None:
        self.n = seed

    def message(self, message_type: MessageType) -> Message:
        return self.value(walk.body(message_type))  # type: ignore[no-any-return]

    def value(self, node: Node) -> Any:
        self.n += 1
        n, size = self.n, node.size or 0
        if node.kind is Kind.UINT:
            return [0, 1, n % 2 ** (8 * size), 2 ** (8 * size) - 1][n % 4]
        if node.kind is Kind.SINT:
            return [-1, n % 2 ** (8 * size - 1), -(2 ** (8 * size - 1)), 2 ** (8 * size - 1) - 1][n % 4]
        if node.kind is Kind.FLOAT:
            return [n + 0.25, -(n + 0.5)][n % 2]
        if node.kind is Kind.BOOL:
            return n % 2 == 0
        if node.kind is Kind.ENUM:
            assert node.enum is not None
            members = list(node.enum)
            return members[n % len(members)]
        if node.kind is Kind.BYTES:
            return bytes((n + i) % 256 for i in range(size))
        if node.kind is Kind.BLOB:
            return bytes(range(n % 4 * 5))
        if node.kind is Kind.STRING:
            return ["", f"{node.name}-{n}", f"héllo wörld {n}", "x" * 50][n % 4]
        if node.kind is Kind.ARRAY:
            assert node.element is not None
            return tuple(self.value(node.element) for _ in range(n % 3))
        assert node.kind is Kind.STRUCT
        cls = getattr(messages, node.struct_name)
        return cls(**{child.name: self.value(child) for child in node.fields})


# ---------------------------------------------------------------- the capture


@dataclass
class Plan:
    capture: Capture = field(default_factory=Capture)
    frames: dict[int, list[Sent]] = field(default_factory=dict)  # frame number -> PDUs it completes
    malformed: dict[int, str] = field(default_factory=dict)  # frame number -> expert field

    def send(self, flow: TcpFlow, *items: Sent, from_client: bool = True) -> None:
        number = flow.send(b"".join(item.frame for item in items), from_client)
        self.frames[number] = list(items)

    def split(self, flow: TcpFlow, item: Sent, at: int) -> None:
        flow.send(item.frame[:at])  # completes nothing: TCP holds it for reassembly
        self.frames[flow.send(item.frame[at:])] = [item]

    def bad(self, port: int, payload: bytes, expert: str) -> None:
        flow = self.capture.flow("10.0.0.9", port, "10.0.0.1", DEFAULT_AGENT_PORT)
        self.malformed[flow.send(payload)] = expert


def showcase() -> list[Sent]:
    """Frames whose info column the README shows."""
    return [
        Sent(messages.Heartbeat(seq=3, time_us=1_700_000_000_000_000, running=2), 0, False),
        Sent(messages.ProcStart(name="web", bundle="web", argv=("serve", "--port=80")), 7, False),
        Sent(messages.Error(code=ErrorCode.UNKNOWN_PROCESS, message="no process 'db'"), 9, False),
    ]


def build_plan() -> Plan:
    plan = Plan()
    v4 = plan.capture.flow("10.0.0.2", 40000, "10.0.0.1", DEFAULT_AGENT_PORT)
    v6 = plan.capture.flow("fd00::2", 40001, "fd00::1", DEFAULT_ADMIN_PORT)
    other = plan.capture.flow("10.0.0.3", 40002, "10.0.0.1", DECODE_AS_PORT)
    for item in showcase():
        plan.send(v4, item)
    values = Values(seed=0)
    sent = [Sent(values.message(mt), (7919 * i) % 2**32, i % 5 == 0)
            for i, mt in enumerate(list(MessageType) * 2)]
    flows = [v4, v6, other]
    for i, item in enumerate(sent[6:]):
        plan.send(flows[i % 3], item, from_client=i % 2 == 0)
    plan.split(v4, sent[0], 5)  # inside the header
    plan.split(v4, sent[1], 20)  # inside the body
    plan.send(v6, sent[2], sent[3], sent[4])  # three frames, one segment
    tail = sent[5].frame
    v4.send(sent[2].frame + tail[:9])  # a whole frame, then the start of the next
    plan.frames[len(plan.capture.packets)] = [sent[2]]
    plan.frames[v4.send(tail[9:])] = [sent[5]]
    add_malformed(plan)
    return plan


def add_malformed(plan: Plan) -> None:
    good = encode(messages.ProcStart(name="web", bundle="web"), 1)
    body_len = len(good) - 14

    def with_header(frame: bytes, offset: int, fmt: str, value: int) -> bytes:
        return frame[:offset] + struct.pack(fmt, value) + frame[offset + struct.calcsize(fmt):]

    plan.bad(41001, b"XY" + good[2:], "lotc.expert.bad_magic")
    plan.bad(41002, with_header(good, 10, ">I", DEFAULT_MAX_BODY + 1), "lotc.expert.oversize")
    plan.bad(41003, with_header(good, 10, ">I", body_len - 3)[:-3], "lotc.expert.truncated")
    plan.bad(41004, with_header(good, 10, ">I", body_len + 2) + b"\0\0",
             "lotc.expert.trailing_bytes")
    error = encode(messages.Error(code=ErrorCode.CONFLICT, message="x"), 2)
    plan.bad(41005, with_header(error, 14, ">H", 999), "lotc.expert.unknown_enum")
    plan.bad(41006, with_header(good, 3, ">B", 99), "lotc.expert.unknown_enum")
    query = encode(messages.QueryEvents(pattern="*", follow=True), 3)
    plan.bad(41007, query[:-1] + b"\x02", "lotc.expert.bad_bool")
    plan.bad(41008, with_header(good, 2, ">B", 2), "lotc.expert.version")


# ---------------------------------------------------------------- running tshark


@pytest.fixture(scope="module")
def capture(tmp_path_factory: pytest.TempPathFactory) -> tuple[Plan, Path]:
    plan = build_plan()
    path = tmp_path_factory.mktemp("wireshark") / "lotc.pcap"
    path.write_bytes(plan.capture.pcap())
    return plan, path


def tshark(cap: Path, *args: str) -> str:
    return run_tshark(cap, ["-o", "tcp.check_checksum:TRUE", *args], decode_as=[DECODE_AS_PORT])


@pytest.fixture(scope="module")
def dissected(capture: tuple[Plan, Path]) -> dict[int, Pairs]:
    return packets(tshark(capture[1], "-T", "json"))


# ---------------------------------------------------------------- the proofs


def test_every_message_type_is_in_the_capture(capture: tuple[Plan, Path]) -> None:
    plan, _ = capture
    seen = {item.body.TYPE for items in plan.frames.values() for item in items}
    assert seen == set(MessageType)


def test_every_field_shows_the_encoded_value(capture: tuple[Plan, Path],
                                             dissected: dict[int, Pairs]) -> None:
    plan, _ = capture
    for number, items in plan.frames.items():
        got = [value for key, value in dissected[number] if key == "lotc"]
        assert got == [item.expected() for item in items], f"frame {number}"
        assert "_ws.expert" not in set(keys_below(dissected[number])), f"frame {number}"


def test_malformed_frames_get_expert_info_not_errors(capture: tuple[Plan, Path],
                                                     dissected: dict[int, Pairs]) -> None:
    plan, cap = capture
    for number, expert in plan.malformed.items():
        assert expert in set(keys_below(dissected[number])), f"frame {number}: {expert}"
    flagged = tshark(cap, "-Y", "_ws.expert", "-T", "fields", "-e", "frame.number")
    assert {int(n) for n in flagged.split()} == set(plan.malformed)


def test_info_column_names_every_frame(capture: tuple[Plan, Path]) -> None:
    plan, cap = capture
    output = tshark(cap, "-T", "fields", "-e", "frame.number", "-e", "_ws.col.Info")
    info = dict(line.split("\t", 1) for line in output.splitlines())
    for number, items in plan.frames.items():
        text, position = info[str(number)], 0
        assert text.startswith(items[0].info()), text
        for item in items:
            position = text.index(item.info(), position)  # in order, one per frame
    assert [info[str(n)] for n in (1, 2, 3)] == [
        "HEARTBEAT seq=3",
        "PROC_START req=7 name=web bundle=web",
        'ERROR req=9 UNKNOWN_PROCESS message="no process \'db\'"',
    ]
    for number in plan.malformed:
        assert "[" in info[str(number)], info[str(number)]  # e.g. "[truncated body]"
