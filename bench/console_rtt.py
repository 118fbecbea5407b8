"""The console's command round trips under load, for bench.server_load: over one
AdminClient connection, at an even pace, `agents NAME` (model only), `ps PROBE`
(console -> server -> agent -> server -> console: the server asks the agent for its live
state) and `stop`/`resume` of a process on the probe agent (desired state written,
command relayed to the agent, its OK relayed back); then one full `agents` listing."""
from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

import trio

from admin_console.client import AdminClient
from bench.load_setup import ADMIN, PROBE_PROCESSES
from lotc.net.address import Address
from protocol.messages import AgentList, ListAgents, ListProcesses, ProcResume, ProcStop, Results

CONSOLE_TIMEOUT_S = 10.0
FULL_LISTING_TIMEOUT_S = 60.0
CONSOLE_OVERRUN = 2.0  # the console phase ends by this many times --duration, whatever
KINDS = ("agents", "ps", "stop/resume")


@dataclasses.dataclass
class ConsoleFigures:
    rtt_ms: dict[str, list[float]]
    errors: dict[str, int]
    full_listing_ms: float
    full_listing_online: int


def request_body(i: int, probe: str, other: str) -> tuple[str, Any]:
    """The i-th request of the paced sequence: its kind and its body (stop and resume
    alternate, so the probe's process is never asked to stop twice)."""
    kind = KINDS[i % len(KINDS)]
    if kind == "agents":
        return kind, ListAgents(pattern=other)
    if kind == "ps":
        return kind, ListProcesses(pattern=probe)
    cls = ProcStop if (i // len(KINDS)) % 2 == 0 else ProcResume
    return kind, cls(target=probe, name=PROBE_PROCESSES[0], signal="", grace_ms=0)


async def measure_console(admin_port: int, token: str, probe: str, other: str, requests: int,
                          window_s: float, on_tick: Callable[[], None]) -> ConsoleFigures:
    """`requests` of each kind spread over `window_s`; `on_tick` is called once a second."""
    rtt: dict[str, list[float]] = {k: [] for k in KINDS}
    errors: dict[str, int] = {k: 0 for k in KINDS}
    interval = window_s / (len(KINDS) * requests)
    async with AdminClient.connect(Address("127.0.0.1", admin_port), token=token,
                                   name=ADMIN) as client:
        start = trio.current_time()
        next_tick = start + 1.0
        for i in range(len(KINDS) * requests):
            if trio.current_time() - start > window_s * CONSOLE_OVERRUN:
                break  # the server is far behind: the figures so far say it
            await trio.sleep_until(start + i * interval)
            if trio.current_time() >= next_tick:
                on_tick()
                next_tick += 1.0
            kind, body = request_body(i, probe, other)
            began = time.perf_counter()
            try:
                frames = await client.request(body, timeout=CONSOLE_TIMEOUT_S)
                if isinstance(frames[-1].body, Results) and any(
                        r.code != 0 for r in frames[-1].body.results):
                    errors[kind] += 1
            except Exception:  # noqa: BLE001 - counted; the run goes on
                errors[kind] += 1
                continue
            rtt[kind].append((time.perf_counter() - began) * 1000)
        began = time.perf_counter()
        frames = await client.request(ListAgents(pattern=""), timeout=FULL_LISTING_TIMEOUT_S)
        full_ms = (time.perf_counter() - began) * 1000
        online = sum(1 for f in frames if isinstance(f.body, AgentList)
                     for a in f.body.agents if a.online)
    return ConsoleFigures(rtt, errors, full_ms, online)
