from __future__ import annotations

import socket
import struct
import time

import ntplib
import pytest
import trio

from lotc.hostclock import ClockState, read_clock_state
from lotc.sntp import PACKET_SIZE, build_reply, from_ntp, serve_sntp, to_ntp

REPLY_TIMEOUT_S = 2.0


def _ntplib_request(host: str, port: int) -> ntplib.NTPStats:
    return ntplib.NTPClient().request(host, version=3, port=port, timeout=REPLY_TIMEOUT_S)


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
async def test_ntplib_measures_the_configured_offset(host: str) -> None:
    async with trio.open_nursery() as nursery:
        port = await nursery.start(lambda task_status: serve_sntp(
            host, 0, offset_s=2.5, stratum=3, local_stratum=3, task_status=task_status))
        stats = await trio.to_thread.run_sync(_ntplib_request, host, port)
        assert abs(stats.offset - 2.5) < 0.05
        assert 0 <= stats.delay < 0.5
        assert stats.stratum == 3
        assert stats.mode == 4
        assert stats.version == 3
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
async def test_garbage_is_ignored_and_the_server_keeps_answering(host: str) -> None:
    server_mode = bytes([(4 << 3) | 4]) + bytes(PACKET_SIZE - 1)
    bad_version = bytes([(7 << 3) | 3]) + bytes(PACKET_SIZE - 1)
    marker = 0xDEADBEEF_00C0FFEE
    client_v4 = struct.pack("!B39xQ", (4 << 3) | 3, marker)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    async with trio.open_nursery() as nursery:
        port = await nursery.start(serve_sntp, host, 0)
        with trio.socket.socket(family, socket.SOCK_DGRAM) as sock:
            for garbage in [b"", b"x", b"\x1b" * 47, server_mode, bad_version, bytes(5000)]:
                await sock.sendto(garbage, (host, port))
            await sock.sendto(client_v4, (host, port))
            # Datagrams on loopback keep their order: had any garbage been answered,
            # that answer would arrive first and carry a different origin field.
            with trio.fail_after(REPLY_TIMEOUT_S):
                reply, _ = await sock.recvfrom(2048)
        assert len(reply) == PACKET_SIZE
        assert reply[0] & 0x7 == 4 and (reply[0] >> 3) & 0x7 == 4
        assert struct.unpack_from("!Q", reply, 24)[0] == marker
        nursery.cancel_scope.cancel()


def test_reply_copies_the_client_transmit_time_into_origin() -> None:
    client_tx = 0x0123456789ABCDEF
    request = struct.pack("!B47x", (3 << 3) | 3)[:40] + struct.pack("!Q", client_tx)
    reply = build_reply(request, recv_ns=1_000, tx_ns=2_000, stratum=2)
    assert reply is not None
    origin, = struct.unpack_from("!Q", reply, 24)
    assert origin == client_tx
    assert reply[1] == 2


@pytest.mark.parametrize("unix_ns", [0, 1, 999_999_999, time.time_ns(), 2_000_000_000 * 10**9])
def test_ntp_timestamp_round_trip_within_a_nanosecond(unix_ns: int) -> None:
    assert abs(from_ntp(to_ntp(unix_ns)) - unix_ns) <= 1


# ------------------------------------------------------------------ issue 14 item 19: the truth

UNSYNCED = ClockState(synced=False, leap=3, max_error_us=16_000_000)
SYNCED_INSERTING = ClockState(synced=True, leap=1, max_error_us=12_345)


async def _ask(host: str, **options: object) -> ntplib.NTPStats:
    async with trio.open_nursery() as nursery:
        port = await nursery.start(lambda task_status: serve_sntp(
            host, 0, task_status=task_status, **options))  # type: ignore[arg-type]
        stats = await trio.to_thread.run_sync(_ntplib_request, host, port)
        nursery.cancel_scope.cancel()
    return stats


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
async def test_the_reply_tells_the_kernels_sync_state(host: str) -> None:
    """Against the real kernel: on this machine it is unsynced, so leap 3 (REFERENCE.md 7)."""
    stats = await _ask(host)
    state = read_clock_state()
    assert stats.leap == state.leap
    assert abs(stats.root_dispersion - state.max_error_us / 1e6) < 0.01
    if not state.synced:
        assert (stats.leap, stats.stratum) == (3, 0)  # RFC 5905: 16 travels as 0
        assert stats.root_dispersion > 1.0


async def test_unsynced_synced_and_vouched_for_clocks() -> None:
    unsynced = await _ask("127.0.0.1", clock_state=lambda: UNSYNCED)
    assert (unsynced.leap, unsynced.stratum) == (3, 0)
    assert abs(unsynced.root_dispersion - 16.0) < 0.001
    synced = await _ask("127.0.0.1", stratum=3, clock_state=lambda: SYNCED_INSERTING)
    assert (synced.leap, synced.stratum) == (1, 3)  # a leap second announced by the kernel
    assert abs(synced.root_dispersion - 0.012345) < 0.0001
    vouched = await _ask("127.0.0.1", local_stratum=8, clock_state=lambda: UNSYNCED)
    assert (vouched.leap, vouched.stratum) == (0, 8)
