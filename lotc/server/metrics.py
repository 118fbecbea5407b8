"""The server's own metrics (a prometheus_client registry) and the /metrics page.

Theory of operation
-------------------
`ServerMetrics` is made with the Controller and lives as long as it. Its
registry holds what the server measures about itself: two histograms observed
where the work happens (console requests in admin_server.py, database write
transactions in the model), and a collector that reads, at scrape time, figures
the server keeps anyway: connections, frames received per message type (plain
dict counters bumped by lotc/net/receiving.py's Inbox, ~50 ns a frame instead of
a prometheus_client Counter's lock), backlogs, refused logins.

`render` is one scrape: the registry through prometheus_client's own
`generate_latest` (a few hundred samples), then the fleet (fleet_metrics.py, its
fast path: 230,000 samples at 10,000 agents). Renders are rate-limited: a scrape
within `RENDER_INTERVAL_S` of the last one gets the same bytes, so a scrape storm
costs one render a second whatever the number of scrapers.
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import trio
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from lotc.net.refusals import FAILED_LOGIN, Refusals
from lotc.server.fleet_metrics import LabelCache, render_fleet
from protocol.message_types import MessageType

if TYPE_CHECKING:
    from lotc.server.controller import Controller

RENDER_INTERVAL_S = 1.0
LISTENERS = ("agent", "console")  # the label of lotc_frames_received_total
# Console requests run from a millisecond (`agents`) to seconds (a fan-out to slow agents).
REQUEST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
# A write transaction: tens of microseconds, up to the busy_timeout when another writer holds it.
WRITE_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1, 5)

FrameTally = dict[int, int]  # message type -> frames received


class ServerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.request_seconds = Histogram(
            "lotc_console_request_seconds", "Time from a console request's arrival to its "
            "last reply frame (follow streams, events -f and logs -f, are not observed)",
            ["type"], buckets=REQUEST_BUCKETS, registry=self.registry)
        self.db_write_seconds = Histogram(
            "lotc_db_write_seconds", "Duration of one database write transaction",
            buckets=WRITE_BUCKETS, registry=self.registry)
        self.frames: dict[str, FrameTally] = {listener: {} for listener in LISTENERS}
        self.refusals: Refusals | None = None  # set by app.py once it has made them
        self._labels = LabelCache()
        self.render_interval_s = RENDER_INTERVAL_S  # bench.metrics_scrape sets 0
        self._rendered = b""
        self._rendered_at = -RENDER_INTERVAL_S

    def watch(self, ctl: Controller) -> None:
        self.registry.register(_InternalsCollector(ctl, self))

    async def render(self, ctl: Controller) -> bytes:
        """One scrape's page (the last one's if it is younger than RENDER_INTERVAL_S)."""
        now = trio.current_time()
        if now - self._rendered_at >= self.render_interval_s:
            chunks = [generate_latest(self.registry)]
            await render_fleet(ctl, self._labels, chunks)
            self._rendered = b"".join(chunks)
            self._rendered_at = trio.current_time()
        return self._rendered


class _InternalsCollector(Collector):
    """Figures the server keeps anyway, read at scrape time."""

    def __init__(self, ctl: Controller, metrics: ServerMetrics) -> None:
        self.ctl = ctl
        self.metrics = metrics

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        ctl = self.ctl
        connections = GaugeMetricFamily("lotc_connections", "Authenticated connections open "
                                        "now, by kind", labels=["kind"])
        connections.add_metric(["agent"], len(ctl.sessions))
        connections.add_metric(["console"], ctl.console_count())
        yield connections
        frames = CounterMetricFamily("lotc_frames_received", "Frames received and decoded, "
                                     "by listener and message type", labels=["listener", "type"])
        for listener, tally in self.metrics.frames.items():
            for number, count in sorted(tally.items()):
                frames.add_metric([listener, _type_name(number)], count)
        yield frames
        backlog = GaugeMetricFamily("lotc_event_backlog", "Events queued to event followers "
                                    "(events -f) and not yet sent, all followers together")
        backlog.add_metric([], ctl.event_backlog())
        yield backlog
        pending = GaugeMetricFamily("lotc_pending_writes", "Reports received and not yet "
                                    "written to the database, by kind", labels=["kind"])
        for kind, count in ctl.pending_writes().items():
            pending.add_metric([kind], count)
        yield pending
        yield from self._refusals()
        known = GaugeMetricFamily("lotc_agents", "Agents the server knows, by online verdict",
                                  labels=["online"])
        online = sum(1 for view in ctl.fleet.agents.values() if view.online)
        known.add_metric(["1"], online)
        known.add_metric(["0"], len(ctl.fleet.agents) - online)
        yield known

    def _refusals(self) -> Iterator[Metric]:
        totals = self.metrics.refusals.totals if self.metrics.refusals is not None else {}
        failed = CounterMetricFamily("lotc_failed_logins", "Logins refused (unknown or revoked "
                                     "token, wrong proof), agents and consoles")
        failed.add_metric([], totals.get(FAILED_LOGIN, 0))
        yield failed
        refused = CounterMetricFamily("lotc_refused_connections", "Connections refused, by "
                                      "reason (failed login, failed TLS handshake...)",
                                      labels=["reason"])
        for reason, count in sorted(totals.items()):
            refused.add_metric([reason], count)
        yield refused


def _type_name(number: int) -> str:
    try:
        return MessageType(number).name
    except ValueError:
        return str(number)
