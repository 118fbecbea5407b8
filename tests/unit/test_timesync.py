from __future__ import annotations

import logging
import socket
import time
from collections.abc import AsyncIterator, Callable

import pytest
import trio

from lotc.agent import timesync
from lotc.agent.clock import ClockSample, CorrectedClock
from lotc.agent.timesync import TimeSync
from lotc.errors import InvalidRequest
from lotc.hostclock import ClockState
from lotc.net.address import Address
from lotc.sntp import serve_sntp

OFFSET_S = 2.5
TOLERANCE_US = 5_000  # loopback round trips are ~0.1 ms; leave room for a loaded CI box
SHORT_TIMEOUT_S = 0.2  # per sample against a silent server
WAIT_S = 10.0  # deadline for things that normally take milliseconds


def _synced_host() -> ClockState:  # the kernel of a synchronised host, for the responder
    return ClockState(synced=True, leap=0, max_error_us=1000)


def _label(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def _start_sntp(nursery: trio.Nursery, host: str, **kwargs: object) -> int:
    """A responder vouching for its clock whatever the kernel says (this box is unsynced)."""
    port: int = await nursery.start(lambda task_status: serve_sntp(
        host, 0, task_status=task_status, clock_state=_synced_host, **kwargs))  # type: ignore[arg-type]
    return port


@pytest.fixture
async def silent_port() -> AsyncIterator[int]:
    """A bound UDP port that never answers: an NTP server that is down."""
    with trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        await sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
async def test_measures_a_deliberate_offset(host: str) -> None:
    clock = CorrectedClock()
    seen: list[ClockSample] = []
    async with trio.open_nursery() as nursery:
        port = await _start_sntp(nursery, host, offset_s=OFFSET_S, stratum=2)
        sync = TimeSync([_label(host, port)], clock, on_sync=seen.append)
        sample = await sync.measure_once()
        nursery.cancel_scope.cancel()
    assert sample is not None
    assert abs(sample.offset_us - OFFSET_S * 1e6) < TOLERANCE_US
    assert 0 <= sample.delay_us < 100_000
    assert sample.source == _label(host, port)
    assert sample.stratum == 2
    assert clock.synced and clock.sample == sample and seen == [sample]
    assert abs(clock.now_us() - time.time_ns() // 1000 - OFFSET_S * 1e6) < TOLERANCE_US
    assert abs(sample.measured_us - clock.now_us()) < 1_000_000


async def test_unreachable_server_degrades_with_one_warning(
    silent_port: int, caplog: pytest.LogCaptureFixture,
) -> None:
    clock = CorrectedClock()
    sync = TimeSync([f"127.0.0.1:{silent_port}"], clock, timeout_s=SHORT_TIMEOUT_S)
    with caplog.at_level(logging.WARNING, logger=timesync.__name__):
        assert await sync.measure_once() is None
        assert await sync.measure_once() is None
    assert not clock.synced and clock.sample == ClockSample()
    down = [r for r in caplog.records if f"127.0.0.1:{silent_port}" in r.getMessage()]
    unsynced = [r for r in caplog.records if "UNSYNCED" in r.getMessage()]
    assert len(down) == 1 and len(unsynced) == 1  # once per outage, not once per round


async def test_dead_server_among_good_ones_is_ignored(silent_port: int) -> None:
    clock = CorrectedClock()
    async with trio.open_nursery() as nursery:
        port = await _start_sntp(nursery, "::1", offset_s=-1.25)
        sync = TimeSync([f"127.0.0.1:{silent_port}", f"[::1]:{port}"], clock,
                        timeout_s=SHORT_TIMEOUT_S)
        sample = await sync.measure_once()
        nursery.cancel_scope.cancel()
    assert sample is not None and sample.source == f"[::1]:{port}"
    assert abs(sample.offset_us + 1_250_000) < TOLERANCE_US


async def test_outage_keeps_the_last_offset_and_recovery_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = CorrectedClock()
    async with trio.open_nursery() as nursery:
        port = await _start_sntp(nursery, "127.0.0.1", offset_s=OFFSET_S)
        sync = TimeSync([f"127.0.0.1:{port}"], clock, timeout_s=SHORT_TIMEOUT_S)
        first = await sync.measure_once()
        nursery.cancel_scope.cancel()  # the server goes away
    assert first is not None
    with caplog.at_level(logging.WARNING, logger=timesync.__name__):
        assert await sync.measure_once() is None
    assert clock.sample == first  # last good offset kept
    assert any("keeping the last offset" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("stratum", [0, 16])
async def test_unsynchronised_server_is_not_trusted(stratum: int) -> None:
    clock = CorrectedClock()
    async with trio.open_nursery() as nursery:
        port = await _start_sntp(nursery, "127.0.0.1", offset_s=OFFSET_S, stratum=stratum)
        sync = TimeSync([f"127.0.0.1:{port}"], clock, timeout_s=SHORT_TIMEOUT_S)
        assert await sync.measure_once() is None
        nursery.cancel_scope.cancel()
    assert not clock.synced


async def test_best_sample_is_the_one_with_the_lowest_delay(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    delays = {"a:123": [900, 300, 700], "b:123": [500, 400, 600]}

    async def fake_sample(self: TimeSync, address: Address) -> ClockSample:
        delay = delays[str(address)].pop(0)
        return ClockSample(str(address), offset_us=delay * 10, delay_us=delay,
                           stratum=1, measured_us=1)

    monkeypatch.setattr(TimeSync, "_sample", fake_sample)
    clock = CorrectedClock()
    sample = await TimeSync(["a", "b"], clock, samples=3).measure_once()
    assert sample == ClockSample("a:123", 3000, 300, 1, 1) == clock.sample


async def test_run_measures_periodically() -> None:
    clock = CorrectedClock()
    seen: list[ClockSample] = []
    async with trio.open_nursery() as nursery:
        port = await _start_sntp(nursery, "127.0.0.1", offset_s=OFFSET_S)
        sync = TimeSync([f"127.0.0.1:{port}"], clock, interval_s=0.01, on_sync=seen.append)
        await nursery.start(sync.run)
        await _until(lambda: len(seen) >= 3)
        nursery.cancel_scope.cancel()
    assert all(abs(s.offset_us - OFFSET_S * 1e6) < TOLERANCE_US for s in seen)


async def test_failing_on_sync_hook_does_not_stop_time_keeping() -> None:
    def broken(sample: ClockSample) -> None:
        raise RuntimeError("connection gone")

    clock = CorrectedClock()
    async with trio.open_nursery() as nursery:
        port = await _start_sntp(nursery, "127.0.0.1", offset_s=OFFSET_S)
        sample = await TimeSync([f"127.0.0.1:{port}"], clock, on_sync=broken).measure_once()
        nursery.cancel_scope.cancel()
    assert sample is not None and clock.synced


async def test_no_servers_means_run_returns_at_once() -> None:
    with trio.fail_after(WAIT_S):
        await TimeSync([], CorrectedClock()).run()


def test_malformed_server_address_is_rejected_in_plain_words() -> None:
    with pytest.raises(InvalidRequest, match="brackets"):
        TimeSync(["::1:123"], CorrectedClock())


async def _until(predicate: Callable[[], bool]) -> None:
    with trio.fail_after(WAIT_S):
        while not predicate():
            await trio.sleep(0.005)


async def test_a_responder_on_an_unsynchronised_host_is_not_trusted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Issue 14 item 19: our own responder, telling the truth (leap 3), is no time source."""
    clock = CorrectedClock()
    unsynced = ClockState(synced=False, leap=3, max_error_us=16_000_000)
    async with trio.open_nursery() as nursery:
        port: int = await nursery.start(lambda task_status: serve_sntp(
            "127.0.0.1", 0, offset_s=OFFSET_S, clock_state=lambda: unsynced,
            task_status=task_status))
        sample = await TimeSync([_label("127.0.0.1", port)], clock).measure_once()
        nursery.cancel_scope.cancel()
    assert sample is None and not clock.synced
    assert any("not synchronised" in r.getMessage() for r in caplog.records
               if r.name == "lotc.agent.timesync")
