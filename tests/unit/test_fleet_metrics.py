"""/metrics without sockets: the fleet view, its two renderings, the server's own figures.

A real Controller over a real model on a tmp SQLite file; the fleet is filled
through the calls the controller makes when agents report.
"""
from __future__ import annotations

from typing import Any

import trio
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from lotc.server.controller import Controller
from lotc.server.fleet_metrics import FleetCollector, LabelCache, escape_label, render_fleet
from lotc.server.fleet_view import AgentView, FleetView, ProcessView
from lotc.server.model import Model
from protocol.enums import ProcessState
from protocol.messages import KeyValue, ProcessEntry, ProcessStats
from tests.server_helpers import (  # noqa: F401  (fixtures)
    FakeClock,
    ctl_fixture,
    model_fixture,
    wall_fixture,
)

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def reference(ctl: Controller) -> Samples:
    registry = CollectorRegistry()
    registry.register(FleetCollector(ctl))
    return parse(generate_latest(registry).decode())


async def fast(ctl: Controller) -> Samples:
    out: list[bytes] = []
    await render_fleet(ctl, LabelCache(), out)
    return parse(b"".join(out).decode())


def fill(ctl: Controller, wall: FakeClock) -> None:
    fleet = ctl.fleet
    fleet.set_online("web-1", True, wall())
    fleet.set_clock("web-1", -2500, wall())
    fleet.processes_reported("web-1", [
        ProcessEntry(name="api", state=ProcessState.RUNNING, restarts=2),
        ProcessEntry(name="cron", state=ProcessState.BACKOFF, restarts=7)])
    fleet.stats_reported("web-1", [ProcessStats(name="api", cpu_percent=12.5, rss=4096,
                                                restarts=3)])
    fleet.set_online("db-1", False, wall() - 30_000_000)  # offline, heard from 30 s ago
    ctl.process_facts["web-1"] = {"api": (KeyValue(key="health", value="unhealthy"),)}


async def test_fleet_figures_come_from_memory(ctl: Controller, wall: FakeClock) -> None:
    fill(ctl, wall)
    ctl.last_seen_us["web-1"] = wall() - 1_500_000  # older than the view's: the newest counts
    samples = await fast(ctl)

    def get(name: str, **labels: str) -> Any:
        return samples.get((name, tuple(sorted(labels.items()))))

    assert get("lotc_agent_online", agent="web-1") == 1
    assert get("lotc_agent_online", agent="db-1") == 0
    assert get("lotc_agent_last_seen_age_seconds", agent="db-1") == 30.0
    assert get("lotc_agent_last_seen_age_seconds", agent="web-1") == 0.0  # newest of the two
    assert get("lotc_agent_clock_offset_seconds", agent="web-1") == -0.0025
    assert get("lotc_agent_clock_offset_seconds", agent="db-1") is None  # never measured
    assert get("lotc_process_state", agent="web-1", process="api", state="running") == 1
    assert get("lotc_process_state", agent="web-1", process="cron", state="backoff") == 1
    assert get("lotc_process_restarts_total", agent="web-1", process="api") == 3
    assert get("lotc_process_cpu_percent", agent="web-1", process="api") == 12.5
    assert get("lotc_process_rss_bytes", agent="web-1", process="api") == 4096
    assert get("lotc_process_rss_bytes", agent="web-1", process="cron") == 0  # not measured
    assert get("lotc_process_healthy", agent="web-1", process="api") == 0
    assert get("lotc_process_healthy", agent="web-1", process="cron") is None  # no check

    # A state change ends the measurements; entering BACKOFF is a restart, as the agent
    # counts it; a full report forgets what it does not name.
    ctl.fleet.process_state("web-1", "api", ProcessState.BACKOFF)
    assert ctl.fleet.agents["web-1"].processes["api"].rss_bytes == 0
    assert ctl.fleet.agents["web-1"].processes["api"].restarts == 4
    ctl.fleet.processes_reported("web-1", [ProcessEntry(name="cron", state=ProcessState.RUNNING)])
    assert list(ctl.fleet.agents["web-1"].processes) == ["cron"]


async def test_fast_rendering_equals_prometheus_client(ctl: Controller, wall: FakeClock) -> None:
    fill(ctl, wall)
    # Label values the text format must escape (names the model refuses, but the
    # renderer must not depend on that).
    ctl.fleet.agents['odd"\\\nname'] = AgentView(
        online=True, last_seen_us=wall(), processes={'p"q': ProcessView(ProcessState.STOPPED)})
    assert escape_label('a"b\\c\nd') == 'a\\"b\\\\c\\nd'
    assert await fast(ctl) == reference(ctl)


async def test_the_view_loads_the_model_once(model: Model, wall: FakeClock) -> None:
    model.agent_connected("n1", "host", "127.0.0.1:1", "lotc test", wall())
    model.set_agent_clock("n1", "pool.ntp", 1000, 10, wall())
    model.note_process_state("n1", "svc", ProcessState.RUNNING, -1, 0, wall())
    fleet = FleetView()
    fleet.load(model)
    assert fleet.agents["n1"].clock_offset_us == 1000
    assert fleet.agents["n1"].processes["svc"].state == ProcessState.RUNNING


async def test_a_scrape_has_the_server_figures_and_is_rate_limited(
        ctl: Controller, wall: FakeClock, autojump_clock: trio.testing.MockClock) -> None:
    fill(ctl, wall)
    ctl.metrics.frames["agent"][1] = 5  # as lotc/net/receiving.py's Inbox counts them
    ctl.model.set_desired_bundle("web-1", "b", b"\0" * 32, 1, 1, wall())  # a DB write
    first = await ctl.metrics.render(ctl)
    samples = parse(first.decode())
    assert samples[("lotc_connections", (("kind", "agent"),))] == 0
    assert samples[("lotc_frames_received_total", (("listener", "agent"), ("type", "HELLO")))] \
        == 5
    assert samples[("lotc_db_write_seconds_count", ())] >= 1
    assert samples[("lotc_event_backlog", ())] == 0
    assert samples[("lotc_failed_logins_total", ())] == 0
    assert samples[("lotc_agents", (("online", "1"),))] == 1
    ctl.fleet.set_online("new-1", True, wall())
    assert await ctl.metrics.render(ctl) is first  # within RENDER_INTERVAL_S: the same page
    await trio.sleep(1.0)
    assert b'lotc_agent_online{agent="new-1"} 1' in await ctl.metrics.render(ctl)
