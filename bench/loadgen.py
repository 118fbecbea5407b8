"""Simulated agents for bench.server_load: one worker process, many agents, the real protocol.

    .venv/bin/python -m bench.loadgen --server 127.0.0.1:PORT --agents FILE \
        --first 0 --count 2500 --rate 250 --duration 120

Each simulated agent is what lotc/agent/connection.py does on the wire, without
the supervisor behind it: TCP connect, HELLO / CHALLENGE / AUTH with the real
HMAC over its own token (lotc.net.auth.client_handshake), TIME_INFO and
AGENT_STATE, then a HEARTBEAT every `--heartbeat` seconds and a STATS_REPORT
(node figures plus `--stats-processes` process entries) every `--stats`
seconds, each agent at its own random phase so the server sees an even load,
as real agents started at different times would give it. Server requests get a
minimal answer: LIST_PROCESSES (the live refresh behind `ps`) the agent's
state, EVENT_ACK and pings nothing, anything else OK. An agent whose
connection ends reconnects after a jittered backoff, as the real link does
(counted: a healthy run has none).

Agents connect at `--rate` per second at most (with at most `--connecting`
handshakes in flight), so the ramp-up is bounded. The worker stops itself after
`--duration` seconds, on SIGTERM/SIGINT, or when its parent goes away; it never
sends anything but to the given loopback address. Once a second it prints one
JSON line of counters on stdout for the parent (bench.server_load).

FILE is JSON: a list of {"name", "token", "bundles": [[name, sha256 hex]],
"processes": [[name, revision]]}; the bundles and processes (normally empty)
are what the agent reports holding, so an agent given desired state in the
model reports exactly it and its reconcile is a no-op.
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import resource
import signal
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import trio

from lotc.net.address import parse_address
from lotc.net.auth import client_handshake
from lotc.net.framed import FramedStream
from lotc.net.transport import connect
from protocol.codec import encode
from protocol.enums import BundleKind, DesiredState, ProcessState, Role
from protocol.messages import (
    AgentState,
    BundleEntry,
    EventAck,
    Heartbeat,
    ListProcesses,
    NodeStats,
    Ok,
    ProcessEntry,
    ProcessStats,
    StatsReport,
    TimeInfo,
)

CONNECT_TIMEOUT_S = 10.0
HANDSHAKE_TIMEOUT_S = 20.0  # generous: during the ramp the server handshakes thousands
SEND_TIMEOUT_S = 10.0
SILENCE_LIMIT_S = 20.0  # the server pings every 5 s, as the real agent expects
RECONNECT_BASE_S = 1.0
RECONNECT_CAP_S = 8.0
REPORT_INTERVAL_S = 1.0
PARENT_CHECK_S = 1.0
MAX_BODY = 1 << 20


def raise_nofile(wanted: int) -> tuple[int, int]:
    """Raise RLIMIT_NOFILE toward `wanted` (the hard limit too, when root); returns the result."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, wanted))
            return resource.getrlimit(resource.RLIMIT_NOFILE)
        except (ValueError, OSError):
            wanted = hard
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


@dataclass
class Counters:
    online: int = 0  # sessions past WELCOME, not yet ended
    connects: int = 0  # successful handshakes (first ones and reconnects)
    reconnects: int = 0
    failures: int = 0  # connect/handshake failures and sessions that ended
    heartbeats: int = 0
    stats: int = 0
    requests: int = 0  # server requests answered
    backlogged: int = 0  # writes the kernel did not take at once (the server lagged)
    handshake_ms: list[float] = field(default_factory=list)
    last_error: str = ""

    def snapshot(self) -> dict[str, Any]:
        hs = sorted(self.handshake_ms)
        self.handshake_ms.clear()
        return {
            "t": time.time(), "online": self.online, "connects": self.connects,
            "reconnects": self.reconnects, "failures": self.failures,
            "heartbeats": self.heartbeats, "stats": self.stats, "requests": self.requests, "backlogged": self.backlogged,
            "handshake_ms_p50": hs[len(hs) // 2] if hs else None,
            "handshake_ms_max": hs[-1] if hs else None, "last_error": self.last_error,
        }


@dataclass(frozen=True)
class AgentSpec:
    name: str
    token: str
    bundles: tuple[tuple[str, str], ...] = ()
    processes: tuple[tuple[str, int], ...] = ()


class SimulatedAgent:
    def __init__(self, spec: AgentSpec, opts: argparse.Namespace, counters: Counters,
                 pid_base: int, wheel: Wheel) -> None:
        self.spec = spec
        self.opts = opts
        self.counters = counters
        self.pid_base = pid_base
        self.wheel = wheel
        self.seq = 0
        self.link: Link | None = None
        self.stats_every = max(1, round(opts.stats / opts.heartbeat))
        self.stats_phase = random.randrange(self.stats_every)

    # ------------------------------------------------------------ what it reports

    def state(self) -> AgentState:
        now = time.time_ns() // 1000
        return AgentState(
            bundles=tuple(BundleEntry(agent=self.spec.name, name=name, sha256=bytes.fromhex(sha),
                                      kind=BundleKind.FILE, size=1000, stored_us=now)
                          for name, sha in self.spec.bundles),
            processes=tuple(ProcessEntry(
                agent=self.spec.name, name=name, bundle=self.spec.bundles[0][0]
                if self.spec.bundles else "app", revision=revision,
                state=ProcessState.RUNNING, desired=DesiredState.RUNNING,
                pid=self.pid_base + i, exit_code=0, exit_signal=0, restarts=0,
                started_us=now, last_liveness_us=now, status="")
                for i, (name, revision) in enumerate(self.spec.processes)),
        )

    def stats_report(self) -> StatsReport:
        now = time.time_ns() // 1000
        node = NodeStats(cpu_percent=random.uniform(1, 30), load1=0.5, load5=0.4, load15=0.3,
                         mem_total=8 << 30, mem_used=3 << 30, swap_used=0,
                         disk_read_bytes=now // 7, disk_write_bytes=now // 5,
                         net_sent_bytes=now // 3, net_recv_bytes=now // 2,
                         disk_used=20 << 30, disk_total=100 << 30, uptime_s=now // 1_000_000)
        processes = tuple(ProcessStats(name=f"p{i}", pid=self.pid_base + i,
                                       cpu_percent=random.uniform(0, 5), rss=50 << 20,
                                       threads=4, open_files=12, restarts=0,
                                       last_liveness_us=now)
                          for i in range(self.opts.stats_processes))
        return StatsReport(agent=self.spec.name, time_us=now, node=node, processes=processes)

    # ------------------------------------------------------------ life

    async def run(self, connect_slots: trio.Semaphore) -> None:
        """Connect, serve one session, reconnect after a backoff; forever (until cancelled)."""
        attempt = 0
        while True:
            framed = None
            try:
                async with connect_slots:
                    framed, began = await self._connect()
                attempt = 0
                await self._session(framed, began)
            except (OSError, trio.TooSlowError, trio.BrokenResourceError,
                    trio.ClosedResourceError, Exception) as exc:  # noqa: BLE001 - counted, retried
                self.counters.failures += 1
                self.counters.last_error = f"{self.spec.name}: {type(exc).__name__}: {exc}"[:300]
            finally:
                if framed is not None:
                    await framed.aclose()
            attempt += 1
            self.counters.reconnects += 1
            delay = min(RECONNECT_CAP_S, RECONNECT_BASE_S * 2 ** min(attempt, 4))
            await trio.sleep(random.uniform(delay / 2, delay))

    async def _connect(self) -> tuple[FramedStream, float]:
        began = time.perf_counter()
        framed = await connect(self.opts.address, max_body=MAX_BODY, send_timeout=SEND_TIMEOUT_S,
                               timeout=CONNECT_TIMEOUT_S)
        try:
            await client_handshake(framed, role=Role.AGENT, name=self.spec.name,
                                   token=self.spec.token, hostname=f"{self.spec.name}.bench",
                                   addresses=("127.0.0.1",), capabilities=("processes", "stats"),
                                   timeout=HANDSHAKE_TIMEOUT_S)
            await framed.send(TimeInfo(source="bench", offset_us=0, delay_us=100, stratum=2,
                                       measured_us=time.time_ns() // 1000))
            await framed.send(self.state())
        except BaseException:
            await framed.aclose()
            raise
        return framed, began

    async def _session(self, framed: FramedStream, began: float) -> None:
        c = self.counters
        c.handshake_ms.append((time.perf_counter() - began) * 1000)
        c.connects += 1
        c.online += 1
        self.link = Link(framed, self.counters)
        self.wheel.add(self)
        try:
            async with trio.open_nursery() as nursery:
                self.link.nursery = nursery
                await self._read_loop(framed)
        finally:
            self.wheel.remove(self)
            self.link = None
            c.online -= 1

    def tick(self) -> None:
        """Called by the wheel once per heartbeat interval: a HEARTBEAT, and STATS when due."""
        link = self.link
        if link is None or link.broken:
            return
        self.seq = (self.seq + 1) & 0xFFFFFFFF
        link.write(encode(Heartbeat(seq=self.seq, time_us=time.time_ns() // 1000,
                                    running=len(self.spec.processes))))
        self.counters.heartbeats += 1
        if self.seq % self.stats_every == self.stats_phase:
            link.write(encode(self.stats_report()))
            self.counters.stats += 1

    async def _read_loop(self, framed: FramedStream) -> None:
        assert self.link is not None
        while not self.link.broken:
            frame = await framed.receive_within(SILENCE_LIMIT_S)
            body = frame.body
            if isinstance(body, (Heartbeat, EventAck)) or frame.request_id == 0:
                continue
            if isinstance(body, ListProcesses):
                self.link.write(encode(self.state(), frame.request_id))
            else:
                self.link.write(encode(Ok(message="ok"), frame.request_id))
            self.counters.requests += 1
        raise trio.BrokenResourceError(self.link.broken)


class Link:
    """Writes of one simulated agent after its handshake, straight to the socket.

    Thousands of agents per process are only affordable if a heartbeat costs a
    few microseconds here: no task, no lock, no deadline per send, one
    non-blocking write. Every write of the agent goes through `write`, which is
    synchronous, so frames never interleave; what the kernel does not take at
    once (the server is not reading) waits in `backlog`, in order, for a drain
    task.
    """

    def __init__(self, framed: FramedStream, counters: Counters) -> None:
        socket_stream = framed.stream
        assert isinstance(socket_stream, trio.SocketStream)
        self.fd = socket_stream.socket.fileno()
        self.counters = counters
        self.backlog = bytearray()
        self.broken = ""
        self.nursery: trio.Nursery | None = None

    def write(self, data: bytes) -> None:
        if self.broken:
            return
        if self.backlog:
            self.backlog += data
            return
        try:
            sent = os.write(self.fd, data)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            self.broken = f"write failed: {exc}"
            return
        if sent < len(data):
            self.backlog += data[sent:]
            self.counters.backlogged += 1
            assert self.nursery is not None
            self.nursery.start_soon(self._drain)

    async def _drain(self) -> None:
        with trio.move_on_after(SEND_TIMEOUT_S) as scope:
            while self.backlog and not self.broken:
                await trio.lowlevel.wait_writable(self.fd)
                try:
                    sent = os.write(self.fd, self.backlog)
                except BlockingIOError:
                    continue
                except OSError as exc:
                    self.broken = f"write failed: {exc}"
                    return
                del self.backlog[:sent]
        if scope.cancelled_caught:
            self.broken = f"the server read nothing for {SEND_TIMEOUT_S:g} s"


class Wheel:
    """One task ticks every agent once per heartbeat interval, each at its own phase."""

    def __init__(self, interval: float, slots: int = 50) -> None:
        self.interval = interval
        self.slots: list[set[SimulatedAgent]] = [set() for _ in range(slots)]
        self.where: dict[SimulatedAgent, int] = {}

    def add(self, agent: SimulatedAgent) -> None:
        slot = random.randrange(len(self.slots))
        self.where[agent] = slot
        self.slots[slot].add(agent)

    def remove(self, agent: SimulatedAgent) -> None:
        slot = self.where.pop(agent, None)
        if slot is not None:
            self.slots[slot].discard(agent)

    async def run(self) -> None:
        step = self.interval / len(self.slots)
        start = trio.current_time()
        for tick in itertools.count(1):
            await trio.sleep_until(start + tick * step)
            for agent in list(self.slots[tick % len(self.slots)]):
                agent.tick()


def load_specs(path: str, first: int, count: int) -> list[AgentSpec]:
    with open(path, encoding="utf-8") as f:
        entries = json.load(f)
    return [AgentSpec(e["name"], e["token"], tuple(tuple(b) for b in e.get("bundles", ())),
                      tuple(tuple(p) for p in e.get("processes", ())))
            for e in entries[first:first + count]]


async def run_worker(opts: argparse.Namespace, specs: list[AgentSpec]) -> None:
    counters = Counters()
    parent = os.getppid()
    with trio.move_on_after(opts.duration), \
            trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:

            async def stop_on_signal() -> None:
                async for _ in signals:
                    nursery.cancel_scope.cancel()

            async def watch_parent() -> None:
                while os.getppid() == parent:
                    await trio.sleep(PARENT_CHECK_S)
                nursery.cancel_scope.cancel()

            async def report() -> None:
                while True:
                    print(json.dumps(counters.snapshot()), flush=True)
                    await trio.sleep(REPORT_INTERVAL_S)

            wheel = Wheel(opts.heartbeat)

            async def ramp() -> None:
                slots = trio.Semaphore(opts.connecting)
                start = trio.current_time()
                for index, spec in enumerate(specs):
                    await trio.sleep_until(start + index / opts.rate)
                    agent = SimulatedAgent(spec, opts, counters, 1000 + 10 * index, wheel)
                    nursery.start_soon(agent.run, slots)

            nursery.start_soon(wheel.run)

            nursery.start_soon(stop_on_signal)
            nursery.start_soon(watch_parent)
            nursery.start_soon(report)
            nursery.start_soon(ramp)
    print(json.dumps({**counters.snapshot(), "done": True}), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", required=True, help="HOST:PORT of the agent listener")
    parser.add_argument("--agents", required=True, help="JSON file of names and tokens")
    parser.add_argument("--first", type=int, default=0)
    parser.add_argument("--count", type=int, default=2500)
    parser.add_argument("--rate", type=float, default=250.0, help="new connections per second")
    parser.add_argument("--connecting", type=int, default=64, help="handshakes in flight at most")
    parser.add_argument("--heartbeat", type=float, default=1.0)
    parser.add_argument("--stats", type=float, default=10.0)
    parser.add_argument("--stats-processes", type=int, default=3)
    parser.add_argument("--duration", type=float, default=120.0, help="hard stop, seconds")
    opts = parser.parse_args(argv)
    opts.address = parse_address(opts.server)
    if opts.address.host not in ("127.0.0.1", "::1", "localhost"):
        parser.error("the load generator only targets loopback (127.0.0.1 or ::1)")
    specs = load_specs(opts.agents, opts.first, opts.count)
    limits = raise_nofile(len(specs) + 256)
    print(json.dumps({"nofile": limits, "agents": len(specs), "pid": os.getpid()}), flush=True)
    trio.run(run_worker, opts, specs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
