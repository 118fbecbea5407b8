"""Measure the agent's clock offset against NTP servers and feed CorrectedClock.

Theory of operation: every `interval_s` the agent asks each configured server
(`--ntp HOST[:PORT]`, repeatable) for up to `samples` SNTP samples with
ntplib, all servers at once, each sample in a worker thread because ntplib
blocks. Of all the samples it keeps the one with the smallest round-trip
delay: the offset error of an SNTP sample is bounded by half its delay, so
the fastest exchange is the most trustworthy one. That sample goes into the
CorrectedClock and to the `on_sync` callback (the agent turns it into a
CLOCK_SYNC event and a TIME_INFO frame for the server).

Failure policy: a server that does not answer its first sample is not asked
again this round (no point spending samples x timeout on a dead host). A
server outage is logged once when it starts and once when it ends, never once
per round. When no server answers, the clock keeps its last offset (drift
over minutes is far smaller than a fresh error), or stays on the local clock
if it never synced; the age of the last measurement, shown by `agents`, tells
the admin. Replies that fail sanity checks (wrong mode, stratum 0 "kiss of
death" or 16 "unsynchronised", leap alarm, negative delay, a stale origin)
count as no answer.
"""
from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence

import ntplib
import trio

from lotc.agent.clock import ClockSample, CorrectedClock
from lotc.net.address import Address, parse_address

__all__ = [
    "DEFAULT_INTERVAL_S", "DEFAULT_NTP_PORT", "DEFAULT_SAMPLES", "DEFAULT_TIMEOUT_S",
    "BadReply", "TimeSync",
]

logger = logging.getLogger(__name__)

DEFAULT_NTP_PORT = 123
DEFAULT_SAMPLES = 4
DEFAULT_INTERVAL_S = 64.0  # NTP's own minimum poll interval: cheap, and drift stays sub-ms
DEFAULT_TIMEOUT_S = 1.0  # per sample; an NTP server on a LAN answers in well under 10 ms
THREAD_GRACE_S = 0.5  # beyond ntplib's socket timeout before we stop waiting for its thread
NTP_VERSION = 3
MODE_SERVER = 4
LEAP_ALARM = 3  # "clock unsynchronized"
MAX_STRATUM = 15  # 16 means unsynchronised


class BadReply(Exception):
    """An SNTP reply that must not be used to set the clock."""


def _label(address: Address) -> str:
    return str(address)


def _query(address: Address, timeout_s: float) -> ntplib.NTPStats:
    """One blocking SNTP exchange (runs in a worker thread)."""
    return ntplib.NTPClient().request(
        address.host, version=NTP_VERSION, port=address.port, timeout=timeout_s)


def _check(stats: ntplib.NTPStats, timeout_s: float) -> None:
    if stats.mode != MODE_SERVER:
        raise BadReply(f"mode {stats.mode}, expected {MODE_SERVER} (server)")
    if not 1 <= stats.stratum <= MAX_STRATUM:
        raise BadReply(f"stratum {stats.stratum}: the server is not synchronised")
    if stats.leap == LEAP_ALARM:
        raise BadReply("leap indicator says the server clock is unsynchronised")
    elapsed = stats.dest_time - stats.orig_time  # both on our own clock
    if not (0 <= stats.delay and 0 <= elapsed <= timeout_s + THREAD_GRACE_S):
        raise BadReply(f"inconsistent timestamps (delay {stats.delay:.6f} s, "
                       f"elapsed {elapsed:.6f} s): a stale or forged reply")
    if not math.isfinite(stats.offset):
        raise BadReply("offset is not a finite number")


class TimeSync:
    """Periodic NTP measurement feeding a CorrectedClock.

    `servers` are `HOST`, `HOST:PORT` or `[V6]:PORT` strings (port 123 by default);
    a malformed one raises InvalidRequest here, at start-up, in plain words.
    """

    def __init__(
        self,
        servers: Sequence[str],
        clock: CorrectedClock,
        *,
        samples: int = DEFAULT_SAMPLES,
        interval_s: float = DEFAULT_INTERVAL_S,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        on_sync: Callable[[ClockSample], None] | None = None,
    ) -> None:
        if samples < 1 or interval_s <= 0 or timeout_s <= 0:
            raise ValueError("samples, interval_s and timeout_s must be positive")
        self.servers = [parse_address(text, DEFAULT_NTP_PORT) for text in servers]
        self.clock = clock
        self.samples = samples
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self.on_sync = on_sync
        self._down: set[str] = set()  # servers whose current outage was already logged
        self._unsynced_logged = False

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Measure now, then every `interval_s`, until cancelled. Never raises on network trouble."""
        task_status.started()  # do not hold up the agent's start-up on a slow NTP server
        if not self.servers:
            logger.warning("no NTP server configured: the agent runs on its local clock, unsynced")
            return
        while True:
            await self.measure_once()
            await trio.sleep(self.interval_s)

    async def measure_once(self) -> ClockSample | None:
        """One round over all servers; apply and return the best sample, or None if none answered."""
        results: dict[str, ClockSample | None] = {}
        async with trio.open_nursery() as nursery:
            for address in self.servers:
                nursery.start_soon(self._measure_server, address, results)
        answered = [sample for sample in results.values() if sample is not None]
        if not answered:
            self._log_unsynced()
            return None
        best = min(answered, key=lambda sample: sample.delay_us)
        self._apply(best)
        return best

    async def _measure_server(
        self, address: Address, results: dict[str, ClockSample | None],
    ) -> None:
        label = _label(address)
        best: ClockSample | None = None
        for _ in range(self.samples):
            try:
                sample = await self._sample(address)
            except (ntplib.NTPException, OSError, BadReply, trio.TooSlowError) as exc:
                if best is None:  # first sample failed: treat the server as down this round
                    self._log_down(label, exc)
                    break
                continue  # one lost packet among good ones is normal on a busy network
            if best is None or sample.delay_us < best.delay_us:
                best = sample
        if best is not None and label in self._down:
            self._down.discard(label)
            logger.warning("NTP server %s answers again", label)
        results[label] = best

    async def _sample(self, address: Address) -> ClockSample:
        # The thread cannot be interrupted; its socket timeout ends it. We stop
        # waiting slightly later and abandon it, so a wedged resolver cannot hang us.
        with trio.fail_after(self.timeout_s + THREAD_GRACE_S):
            stats = await trio.to_thread.run_sync(
                _query, address, self.timeout_s, abandon_on_cancel=True)
        _check(stats, self.timeout_s)
        offset_us = round(stats.offset * 1e6)
        return ClockSample(
            source=_label(address),
            offset_us=offset_us,
            delay_us=round(stats.delay * 1e6),
            stratum=stats.stratum,
            measured_us=round(stats.dest_time * 1e6) + offset_us,
        )

    def _apply(self, sample: ClockSample) -> None:
        was_synced = self.clock.synced
        self.clock.update(sample)
        level = logging.INFO if not was_synced or self._unsynced_logged else logging.DEBUG
        logger.log(level, "clock synced to %s: offset %+d us, delay %d us, stratum %d",
                   sample.source, sample.offset_us, sample.delay_us, sample.stratum)
        self._unsynced_logged = False
        if self.on_sync is not None:
            try:
                self.on_sync(sample)
            except Exception:  # a reporting hook must not stop time keeping
                logger.exception("on_sync callback failed")

    def _log_down(self, label: str, exc: BaseException) -> None:
        if label in self._down:
            return
        self._down.add(label)
        reason = str(exc) or type(exc).__name__
        logger.warning("NTP server %s unreachable or unusable: %s", label, reason)

    def _log_unsynced(self) -> None:
        if self._unsynced_logged:
            return
        self._unsynced_logged = True
        if self.clock.synced:
            logger.warning("no NTP server answered: keeping the last offset %+d us from %s",
                           self.clock.sample.offset_us, self.clock.sample.source)
        else:
            logger.warning("no NTP server answered: running on the local clock, UNSYNCED")
