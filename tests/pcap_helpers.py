"""Captures for the Wireshark dissector tests, and what tshark should show for them.

`Capture` writes classic pcap files of TCP conversations from payload bytes (no
capture needed): each packet is Ethernet + IPv4 or IPv6 + TCP with correct
lengths, sequence numbers and checksums, so tshark reassembles the streams as it
would a real capture. `Sent.expected()` is what `tshark -T json` prints for one
LOTC frame, derived by walking the same spec nodes the generator walked, and
`run_tshark` runs tshark with the generated dissector and fails on any Lua error.
Used by tests/e2e/test_wireshark*.py.
"""
from __future__ import annotations

import ipaddress
import json
import math
import shutil
import struct
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from protocol import luagen, walk
from protocol.codec import encode
from protocol.messages import Message
from protocol.spec import HEADER_SIZE, MAGIC, VERSION
from protocol.walk import Kind, Node

TSHARK = shutil.which("tshark")
TSHARK_MISSING = ("tshark is not installed: `make test` installs it when run as root with "
                  "apt-get (tests/install_tshark.sh); else apt-get install tshark")
Pairs = list[tuple[str, Any]]

LINKTYPE_ETHERNET = 1
_PSH_ACK = 0x18
_ETHER_IPV4, _ETHER_IPV6 = 0x0800, 0x86DD
_TCP = 6


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


@dataclass
class Capture:
    """Packets in capture order; `Capture.flow(...)` opens a TCP conversation."""

    packets: list[bytes] = field(default_factory=list)

    def flow(self, client: str, client_port: int, server: str, server_port: int) -> TcpFlow:
        return TcpFlow(self, ipaddress.ip_address(client), client_port,
                       ipaddress.ip_address(server), server_port)

    def add(self, frame: bytes) -> int:
        """Append one link-layer frame; returns its 1-based frame number."""
        self.packets.append(frame)
        return len(self.packets)

    def pcap(self) -> bytes:
        out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, LINKTYPE_ETHERNET)]
        for number, frame in enumerate(self.packets):
            # One millisecond apart, starting 2024-01-01, so timestamps read sensibly.
            seconds, micros = divmod(1_704_067_200_000_000 + number * 1000, 1_000_000)
            out.append(struct.pack("<IIII", seconds, micros, len(frame), len(frame)) + frame)
        return b"".join(out)


@dataclass
class TcpFlow:
    """One TCP connection; `send` appends a segment in either direction."""

    capture: Capture
    client: ipaddress.IPv4Address | ipaddress.IPv6Address
    client_port: int
    server: ipaddress.IPv4Address | ipaddress.IPv6Address
    server_port: int
    client_seq: int = 1000
    server_seq: int = 5000

    def send(self, payload: bytes, from_client: bool = True) -> int:
        """Append one segment carrying `payload`; returns its frame number."""
        if from_client:
            src, sport, dst, dport = self.client, self.client_port, self.server, self.server_port
            seq, ack = self.client_seq, self.server_seq
            self.client_seq += len(payload)
        else:
            src, sport, dst, dport = self.server, self.server_port, self.client, self.client_port
            seq, ack = self.server_seq, self.client_seq
            self.server_seq += len(payload)
        tcp = _tcp_segment(src, dst, sport, dport, seq, ack, payload)
        return self.capture.add(_ethernet(src.version) + _ip(src, dst, len(tcp)) + tcp)


def _ethernet(version: int) -> bytes:
    ether_type = _ETHER_IPV4 if version == 4 else _ETHER_IPV6
    return b"\x02\0\0\0\0\x02" + b"\x02\0\0\0\0\x01" + struct.pack("!H", ether_type)


def _ip(src: ipaddress.IPv4Address | ipaddress.IPv6Address,
        dst: ipaddress.IPv4Address | ipaddress.IPv6Address, payload_len: int) -> bytes:
    if src.version == 6:
        return struct.pack("!IHBB", 6 << 28, payload_len, _TCP, 64) + src.packed + dst.packed
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + payload_len, 1, 0x4000, 64, _TCP, 0,
                         src.packed, dst.packed)
    return header[:10] + struct.pack("!H", _checksum(header)) + header[12:]


def _tcp_segment(src: ipaddress.IPv4Address | ipaddress.IPv6Address,
                 dst: ipaddress.IPv4Address | ipaddress.IPv6Address,
                 sport: int, dport: int, seq: int, ack: int, payload: bytes) -> bytes:
    header = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, 5 << 4, _PSH_ACK, 65535, 0, 0)
    length = len(header) + len(payload)
    if src.version == 6:
        pseudo = src.packed + dst.packed + struct.pack("!IxxxB", length, _TCP)
    else:
        pseudo = src.packed + dst.packed + struct.pack("!xBH", _TCP, length)
    checksum = _checksum(pseudo + header + payload)
    return header[:16] + struct.pack("!H", checksum) + header[18:] + payload


# ---------------------------------------------------------------- what tshark should show


@dataclass(frozen=True)
class FloatText:
    """An expected float: tshark prints float32 with 6 significant digits (FLT_DIG)."""

    value: float

    def __eq__(self, other: object) -> bool:
        return isinstance(other, str) and math.isclose(float(other), self.value, rel_tol=1e-5)

    def __hash__(self) -> int:
        return hash(self.value)


def shown(path: str, node: Node, value: Any) -> Pairs:
    """The (key, value) pairs `tshark -T json` prints for `node` holding `value`."""
    if node.kind is Kind.STRUCT:
        return [(path, [p for c in node.fields
                        for p in shown(f"{path}.{c.name}", c, getattr(value, c.name))])]
    if node.kind is Kind.ARRAY:
        assert node.element is not None
        items = [p for item in value
                 for p in shown(f"{path}.{node.element.name}", node.element, item)]
        return [(path, str(len(value)))] + ([(path + "_tree", items)] if items else [])
    if node.kind is Kind.FLAGS:
        assert node.enum is not None and node.size is not None
        bits = [(luagen.flag_path(path, m), "1" if value & m else "0") for m in node.enum]
        return [(path, f"0x{value:0{2 * node.size}x}"), (path + "_tree", bits)]
    if node.kind in (Kind.BYTES, Kind.BLOB, Kind.CONST):
        return [(path, ":".join(f"{b:02x}" for b in value))]
    if node.kind is Kind.FLOAT:
        return [(path, FloatText(struct.unpack(">f", struct.pack(">f", value))[0]))]
    if node.kind is Kind.BOOL:
        return [(path, "1" if value else "0")]
    return [(path, value if node.kind is Kind.STRING else str(int(value)))]


@dataclass(frozen=True)
class Sent:
    """One LOTC frame as encoded by the codec."""

    body: Message
    request_id: int
    more: bool

    @property
    def frame(self) -> bytes:
        return encode(self.body, self.request_id, self.more)

    def expected(self) -> Pairs:
        header = walk.header()
        values = {"magic": MAGIC, "version": VERSION, "type": int(self.body.TYPE),
                  "flags": int(self.more), "request_id": self.request_id,
                  "body_length": len(self.frame) - HEADER_SIZE}
        hdr = [p for c in header.fields for p in shown(f"lotc.hdr.{c.name}", c, values[c.name])]
        body = shown(luagen.message_path(self.body.TYPE), walk.body(self.body.TYPE), self.body)
        return [("lotc.hdr", hdr)] + body

    def info(self) -> str:
        name = self.body.TYPE.name
        return f"{name} req={self.request_id}" if self.request_id else name




# ---------------------------------------------------------------- running tshark


def run_tshark(cap: Path, args: Sequence[str], decode_as: Sequence[int] = (),
               lua: bool = True) -> str:
    """tshark's stdout over `cap`, with the generated dissector; asserts no Lua error."""
    assert TSHARK is not None
    plugin = ["-X", f"lua_script:{luagen.TARGET}"] if lua else []
    ports = [arg for port in decode_as for arg in ("-d", f"tcp.port=={port},lotc")]
    result = subprocess.run(
        [TSHARK, "-n", "-r", str(cap), *plugin, *ports, *args],
        check=False, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    for text in (result.stdout, result.stderr):
        assert "Lua Error" not in text and "lua.error" not in text.lower(), text[:2000]
    return result.stdout


def packets(output: str) -> dict[int, Pairs]:
    """frame number -> the layers of that packet, duplicate keys kept in order."""
    out = {}
    for packet in json.loads(output, object_pairs_hook=list):
        layers = dict(dict(packet)["_source"])["layers"]
        number = int(dict(dict(layers)["frame"])["frame.number"])
        out[number] = layers
    return out


def keys_below(pairs: Pairs) -> Iterator[str]:
    for key, value in pairs:
        yield key
        if isinstance(value, list):
            yield from keys_below(value)
