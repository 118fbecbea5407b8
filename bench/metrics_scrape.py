"""One /metrics scrape at 10,000 agents x 5 processes (issue 19 item 1: under 1 s).

    .venv/bin/python -m bench.metrics_scrape [--agents 10000] [--processes 5] [--rounds 5]

The fleet is put straight into a real Controller's memory (the calls the agent
server makes when agents connect and report: FleetView.set_online, set_clock,
processes_reported, stats_reported), over a real model on a temporary SQLite file:
no agent sockets. Then, in the same trio run, the real HTTP listener
(lotc/server/http_server.py, hypercorn on 127.0.0.1) is scraped with urllib from a
thread, each round a fresh render (the 1 s render cache is turned off). The garbage collector is paced as in
`lotc server` (lotc/server/gc_pacing.py).

Printed: per round, the scrape's wall time over HTTP and render() alone; the
longest the event loop went without running another task during a render (the
renderer yields every few thousand samples); the same fleet rendered by
prometheus_client's own generate_latest over FleetCollector (the reference), and an
empty server's scrape as the baseline, side by side with the load average.
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import urllib.request
from pathlib import Path

import trio
from prometheus_client import CollectorRegistry, generate_latest

from lotc.net.address import Address
from lotc.net.transport import open_listeners
from lotc.server.config import ServerConfig
from lotc.server.controller import Controller
from lotc.server.fleet_metrics import FleetCollector
from lotc.server.gc_pacing import pace_full_collections
from lotc.server.http_server import serve_http
from lotc.server.model import Model
from protocol.enums import ProcessState
from protocol.messages import KeyValue, ProcessEntry, ProcessStats

TARGET_S = 1.0
HTTP_TIMEOUT_S = 30.0


def fill(ctl: Controller, agents: int, processes: int) -> None:
    now = ctl.now_us()
    for i in range(agents):
        name = f"node-{i:05d}"
        ctl.fleet.set_online(name, i % 10 != 0, now)  # one in ten offline
        ctl.fleet.set_clock(name, (i % 200) - 100, now)
        ctl.last_seen_us[name] = now - (i % 5) * 1_000_000
        ctl.fleet.processes_reported(name, [
            ProcessEntry(name=f"proc-{j}", state=ProcessState.RUNNING, restarts=j)
            for j in range(processes)])
        ctl.fleet.stats_reported(name, [
            ProcessStats(name=f"proc-{j}", pid=1000 + j, cpu_percent=1.5 * j, rss=(j + 1) << 20,
                         restarts=j) for j in range(processes)])
        ctl.process_facts[name] = {"proc-0": (KeyValue(key="health", value="healthy"),)}


def get(url: str) -> tuple[float, int]:
    started = time.perf_counter()
    with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT_S) as response:
        size = len(response.read())
    return time.perf_counter() - started, size


async def longest_stall(ctl: Controller) -> tuple[float, float]:
    """(render seconds, longest gap between two runs of a ticker task during it)."""
    gaps: list[float] = []
    done = False

    async def ticker() -> None:
        last = time.perf_counter()
        while not done:
            await trio.lowlevel.checkpoint()
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    async with trio.open_nursery() as nursery:
        nursery.start_soon(ticker)
        await trio.lowlevel.checkpoint()
        started = time.perf_counter()
        await ctl.metrics.render(ctl)
        took = time.perf_counter() - started
        done = True
    return took, max(gaps, default=0.0)


async def scrape_rounds(ctl: Controller, rounds: int) -> dict[str, list[float]]:
    ctl.metrics.render_interval_s = 0.0  # every scrape renders
    listeners = await open_listeners([Address("127.0.0.1", 0)])
    port = listeners[0].socket.getsockname()[1]  # type: ignore[attr-defined]
    url = f"http://127.0.0.1:{port}/metrics"
    figures: dict[str, list[float]] = {"http": [], "render": [], "stall": [], "bytes": []}
    async with trio.open_nursery() as nursery:
        await nursery.start(serve_http, ctl, listeners)
        for _ in range(rounds):
            took, size = await trio.to_thread.run_sync(get, url)
            figures["http"].append(took)
            figures["bytes"].append(size)
            render, stall = await longest_stall(ctl)
            figures["render"].append(render)
            figures["stall"].append(stall)
        nursery.cancel_scope.cancel()
    return figures


def reference_s(ctl: Controller) -> float:
    registry = CollectorRegistry()
    registry.register(FleetCollector(ctl))
    started = time.perf_counter()
    generate_latest(registry)
    return time.perf_counter() - started


def ms(values: list[float]) -> str:
    return f"median {statistics.median(values) * 1000:.0f} ms, max {max(values) * 1000:.0f} ms"


async def run(args: argparse.Namespace) -> int:
    root = Path(tempfile.mkdtemp(prefix="lotc-metrics-scrape-"))
    model = Model(root / "lotc.db")
    ctl = Controller(model, ServerConfig(db_path=root / "lotc.db"))
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(pace_full_collections)  # as `lotc server` runs (app.run)
            empty = await scrape_rounds(ctl, args.rounds)
            fill(ctl, args.agents, args.processes)
            full = await scrape_rounds(ctl, args.rounds)
            nursery.cancel_scope.cancel()
        reference = reference_s(ctl) if args.reference else None
    finally:
        model.close()
    load = os.getloadavg()
    samples = args.agents * (3 + 4 * args.processes) + args.agents
    print(f"machine: {os.cpu_count()} cores, load average {load[0]:.2f} {load[1]:.2f} "
          f"{load[2]:.2f}")
    print(f"metrics_scrape: {args.agents} agents x {args.processes} processes "
          f"(~{samples} samples, {full['bytes'][0] / 1e6:.1f} MB), {args.rounds} rounds")
    print(f"  scrape over HTTP: {ms(full['http'])}  [target < {TARGET_S:g} s: "
          f"{max(full['http']) / TARGET_S:.2f}x of it at worst]")
    print(f"  render() alone: {ms(full['render'])}; longest event-loop stall during it: "
          f"{max(full['stall']) * 1000:.1f} ms")
    print(f"  empty server (baseline) over HTTP: {ms(empty['http'])}, "
          f"{empty['bytes'][0]} bytes")
    if reference is not None:
        print(f"  prometheus_client generate_latest over FleetCollector (same fleet): "
              f"{reference * 1000:.0f} ms = {reference / statistics.median(full['render']):.1f}x "
              "render()")
    return 0 if max(full["http"]) < TARGET_S else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--agents", type=int, default=10_000)
    parser.add_argument("--processes", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--no-reference", dest="reference", action="store_false",
                        help="skip the (slow) prometheus_client reference rendering")
    return trio.run(run, parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
