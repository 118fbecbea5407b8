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

It tells the truth about the host's clock (lotc/hostclock.py, read per request):
while the kernel says the clock is not synchronised, replies carry leap 3
("alarm") and stratum 0 (RFC 5905's wire form of 16, "unsynchronised"), so
clients, our agents included, do not set their clocks by it. The root
dispersion is the kernel's maximum error. `local_stratum` is chrony's
`local stratum N`: the operator declares this clock good enough to serve even
unsynchronised (an isolated site), and replies then say stratum N, leap 0.
"""
from __future__ import annotations

import logging
import socket
import struct
import time
from collections.abc import Callable

import trio

from lotc.hostclock import LEAP_ALARM, ClockState, read_clock_state

__all__ = ["NTP_EPOCH_DELTA_S", "PACKET_SIZE", "build_reply", "from_ntp", "serve_sntp", "to_ntp"]

logger = logging.getLogger(__name__)

NTP_EPOCH_DELTA_S = 2_208_988_800  # seconds from 1900-01-01 (NTP era 0) to 1970-01-01
PACKET_SIZE = 48  # an NTP header without extension fields or MAC
MAX_DATAGRAM = 1024  # requests with extensions/MAC are longer; anything bigger is not NTP
MODE_CLIENT = 3
MODE_SERVER = 4
REF_ID_LOCAL = b"LOCL"  # RFC 4330: reference identifier of a server on its own clock
REF_ID_UNSYNCED = b"INIT"  # with stratum 0, a kiss code: "not yet synchronised"
STRATUM_UNSYNCED = 0  # RFC 5905 7.3: stratum 16 (unsynchronised) is sent as 0
MAX_SHORT = 0xFFFFFFFF  # NTP short format (16.16 s): root delay and dispersion
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


def to_short(microseconds: int) -> int:
    """Microseconds -> NTP short format (16.16 fixed-point seconds), saturated."""
    return min(MAX_SHORT, max(0, microseconds) * 65536 // 1_000_000)


def build_reply(request: bytes, recv_ns: int, tx_ns: int, stratum: int, *,
                leap: int = 0, root_dispersion_us: int = 0) -> bytes | None:
    """The mode-4 answer to `request`, or None when it is not a client request.

    leap 3 means "unsynchronised": the stratum is then sent as 0, with "INIT".
    """
    if not PACKET_SIZE <= len(request) <= MAX_DATAGRAM:
        return None
    first, *_rest, client_tx = _HEADER.unpack_from(request)
    version, mode = (first >> 3) & 0x7, first & 0x7
    if mode != MODE_CLIENT or not 1 <= version <= 4:
        return None
    unsynced = leap == LEAP_ALARM
    return _HEADER.pack(
        (leap << 6) | (version << 3) | MODE_SERVER,
        STRATUM_UNSYNCED if unsynced else stratum,
        4, PRECISION_LOG2,  # poll 2^4 s: a hint, clients choose
        0, to_short(root_dispersion_us),  # root delay: in the kernel's maximum error
        REF_ID_UNSYNCED if unsynced else REF_ID_LOCAL,
        to_ntp(recv_ns), client_tx, to_ntp(recv_ns), to_ntp(tx_ns),
    )


def answer(request: bytes, recv_ns: int, tx_ns: int, state: ClockState, stratum: int,
           local_stratum: int | None) -> bytes | None:
    """`build_reply` for a host clock in `state` (see the module docstring)."""
    if not state.synced and local_stratum is not None:  # the operator vouches for it
        return build_reply(request, recv_ns, tx_ns, local_stratum)
    return build_reply(request, recv_ns, tx_ns, stratum, leap=state.leap,
                       root_dispersion_us=state.max_error_us)


async def serve_sntp(
    address_host: str,
    port: int,
    *,
    offset_s: float = 0.0,
    stratum: int = 2,
    local_stratum: int | None = None,
    clock_state: Callable[[], ClockState] = read_clock_state,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Answer SNTP requests on `address_host:port` (IPv4 or IPv6) until cancelled.

    `stratum` is ours while the host clock is synchronised (the kernel does not
    know its source's); `local_stratum` see the module docstring; `clock_state`
    is the host clock's state (tests give a fixed one).
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
        state = clock_state()
        logger.info("SNTP responder on %s port %d (offset %+.6f s, stratum %d)",
                    address_host, bound_port, offset_s, stratum)
        if not state.synced:
            logger.warning(
                "this host's clock is not synchronised (kernel): SNTP replies say so (leap 3)"
                + ("" if local_stratum is None else
                   f", except that --ntp-local-stratum serves it as stratum {local_stratum}"))
        task_status.started(bound_port)
        while True:
            try:
                data, peer = await sock.recvfrom(MAX_DATAGRAM + 1)
            except (ConnectionResetError, ConnectionRefusedError):
                continue  # an ICMP error about an earlier reply: not our problem
            recv_ns = time.time_ns() + offset_ns
            reply = answer(data, recv_ns, time.time_ns() + offset_ns, clock_state(),
                           stratum, local_stratum)
            if reply is None:
                logger.debug("SNTP: ignored %d-byte datagram from %s", len(data), peer)
                continue
            try:
                await sock.sendto(reply, peer)
            except OSError as exc:  # unreachable peer, full buffer: drop this reply only
                logger.debug("SNTP: reply to %s failed: %s", peer, exc)
