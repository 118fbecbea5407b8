"""Write classic pcap files of TCP conversations from payload bytes (no capture needed).

Each packet is Ethernet + IPv4 or IPv6 + TCP with correct lengths, sequence
numbers and checksums, so tshark reassembles the streams as it would a real
capture. Used by tests/e2e/test_wireshark.py to feed the generated dissector.
"""
from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass, field

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
