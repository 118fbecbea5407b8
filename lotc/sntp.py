"""A small SNTP responder (RFC 4330 server side) over trio UDP.

Theory of operation: `lotc server --ntp-listen ADDR:PORT` runs one of these so
a site without an NTP server still gives its agents one time source, and the
tests and the schedule benchmark run one with a deliberate `offset_s` (a
server ahead of or behind the host clock). Each mode-3 (client) request is
answered with a mode-4 packet: the client's transmit timestamp copied into the
origin field (the client matches replies and computes offset/delay from it),
receive and transmit timestamps taken from the host clock plus `offset_s`.
Anything that is not a well-formed client request is dropped without a reply:
a time server must never crash or amplify traffic because of a stray packet.
"""
from __future__ import annotations

import logging
import socket
import struct
import time

import trio

__all__ = ["NTP_EPOCH_DELTA_S", "PACKET_SIZE", "build_reply", "from_ntp", "serve_sntp", "to_ntp"]

logger = logging.getLogger(__name__)

NTP_EPOCH_DELTA_S = 2_208_988_800  # seconds from 1900-01-01 (NTP era 0) to 1970-01-01
PACKET_SIZE = 48  # an NTP header without extension fields or MAC
MAX_DATAGRAM = 1024  # requests with extensions/MAC are longer; anything bigger is not NTP
MODE_CLIENT = 3
MODE_SERVER = 4
REF_ID_LOCAL = b"LOCL"  # RFC 4330: reference identifier of a server on its own clock
PRECISION_LOG2 = -20  # about a microsecond: what time.time_ns offers on Linux
_HEADER = struct.Struct("!BBbb II 4s QQQQ")


def to_ntp(unix_ns: int) -> int:
    """Unix nanoseconds -> 64-bit NTP timestamp (32.32 fixed point since 1900)."""
    seconds, ns = divmod(unix_ns, 1_000_000_000)
    fraction = (ns << 32) // 1_000_000_000
    return ((seconds + NTP_EPOCH_DELTA_S) % (1 << 32)) << 32 | fraction


def from_ntp(timestamp: int) -> int:
    """64-bit NTP timestamp -> Unix nanoseconds (era 0, good until 2036)."""
    seconds = (timestamp >> 32) - NTP_EPOCH_DELTA_S
    return seconds * 1_000_000_000 + ((timestamp & 0xFFFFFFFF) * 1_000_000_000 >> 32)


def build_reply(request: bytes, recv_ns: int, tx_ns: int, stratum: int) -> bytes | None:
    """The mode-4 answer to `request`, or None when it is not a client request."""
    if not PACKET_SIZE <= len(request) <= MAX_DATAGRAM:
        return None
    first, *_rest, client_tx = _HEADER.unpack_from(request)
    version, mode = (first >> 3) & 0x7, first & 0x7
    if mode != MODE_CLIENT or not 1 <= version <= 4:
        return None
    first_out = (0 << 6) | (version << 3) | MODE_SERVER  # leap 0: no warning
    return _HEADER.pack(
        first_out, stratum, 4, PRECISION_LOG2,  # poll 2^4 s: a hint, clients choose
        0, 0, REF_ID_LOCAL,  # root delay and dispersion: we are the reference
        to_ntp(recv_ns), client_tx, to_ntp(recv_ns), to_ntp(tx_ns),
    )


async def serve_sntp(
    address_host: str,
    port: int,
    *,
    offset_s: float = 0.0,
    stratum: int = 2,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Answer SNTP requests on `address_host:port` (IPv4 or IPv6) until cancelled.

    `task_status.started(port)` reports the bound port (useful with port 0).
    """
    offset_ns = round(offset_s * 1e9)
    family = socket.AF_INET6 if ":" in address_host else socket.AF_INET
    sock = trio.socket.socket(family, socket.SOCK_DGRAM)
    with sock:
        if family == socket.AF_INET6:
            # One family per socket, as trio.serve_tcp does: the caller opens one per address.
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        await sock.bind((address_host, port))
        bound_port = sock.getsockname()[1]
        logger.info("SNTP responder on %s port %d (offset %+.6f s, stratum %d)",
                    address_host, bound_port, offset_s, stratum)
        task_status.started(bound_port)
        while True:
            try:
                data, peer = await sock.recvfrom(MAX_DATAGRAM + 1)
            except (ConnectionResetError, ConnectionRefusedError):
                continue  # an ICMP error about an earlier reply: not our problem
            recv_ns = time.time_ns() + offset_ns
            reply = build_reply(data, recv_ns, time.time_ns() + offset_ns, stratum)
            if reply is None:
                logger.debug("SNTP: ignored %d-byte datagram from %s", len(data), peer)
                continue
            try:
                await sock.sendto(reply, peer)
            except OSError as exc:  # unreachable peer, full buffer: drop this reply only
                logger.debug("SNTP: reply to %s failed: %s", peer, exc)
