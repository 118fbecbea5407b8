"""What the fleet looks like now, in memory, for /metrics: agents and their processes.

Theory of operation
-------------------
A Prometheus scrape must not query the database (at 10,000 agents x 5 processes
that is 50,000 rows every 15 s, and SQLite answers it on the event loop). Most of
what /metrics shows already lives in the Controller (sessions, last-seen times,
health facts); the rest is only in the model: the agents' clock offsets and the
process states and restart counts. This view caches those figures as the
controller records them: it is filled once from the model when the server starts
(`load`), then kept current by the same calls that write the model (agent
connected or declared offline, TIME_INFO, STATS_REPORT, a state-change event, a
full AGENT_STATE report). It is a cache, never consulted for a decision.

Memory is bounded by the fleet: one small object per known agent and per process.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from protocol.enums import ProcessState

if TYPE_CHECKING:
    from lotc.server.model import Model
    from protocol.messages import ProcessEntry, ProcessStats


@dataclass(slots=True)
class ProcessView:
    state: ProcessState = ProcessState.NONE
    restarts: int = 0
    cpu_percent: float = 0.0  # from the latest STATS_REPORT; 0 when not running
    rss_bytes: int = 0


@dataclass(slots=True)
class AgentView:
    online: bool = False
    last_seen_us: int = 0  # as the model had it; Controller.last_seen_us is fresher
    clock_offset_us: int = 0
    clock_measured_us: int = 0  # 0: never measured (no offset to show)
    processes: dict[str, ProcessView] = field(default_factory=dict)


class FleetView:
    def __init__(self) -> None:
        self.agents: dict[str, AgentView] = {}

    def load(self, model: Model) -> None:
        """The model's picture at start-up: the one database read this view makes."""
        for record in model.agents():
            self.agents[record.name] = AgentView(
                online=record.online, last_seen_us=record.last_seen_us,
                clock_offset_us=record.clock_offset_us,
                clock_measured_us=record.clock_measured_us)
        for status in model.process_statuses():
            view = self._agent(status.agent).processes.setdefault(status.name, ProcessView())
            view.state = ProcessState(status.state)
            view.restarts = status.restarts

    def _agent(self, name: str) -> AgentView:
        view = self.agents.get(name)
        if view is None:
            view = self.agents[name] = AgentView()
        return view

    def set_online(self, name: str, online: bool, now_us: int) -> None:
        view = self._agent(name)
        view.online = online
        view.last_seen_us = max(view.last_seen_us, now_us)

    def set_clock(self, name: str, offset_us: int, measured_us: int) -> None:
        view = self._agent(name)
        view.clock_offset_us = offset_us
        view.clock_measured_us = measured_us

    def process_state(self, agent: str, process: str, state: ProcessState) -> None:
        view = self._agent(agent).processes.setdefault(process, ProcessView())
        view.state = state = ProcessState(state)
        if state == ProcessState.BACKOFF:
            # The agent counts a restart as it enters BACKOFF (lotc/agent/runner.py): so
            # does this view, between the reports that give the count itself. A process
            # in a crash loop is rarely alive when stats are sampled, and is the one to see.
            view.restarts += 1
        if state != ProcessState.RUNNING and state != ProcessState.STOPPED:
            view.cpu_percent, view.rss_bytes = 0.0, 0  # nothing left to measure

    def processes_reported(self, agent: str, entries: Iterable[ProcessEntry]) -> None:
        """A full report (AGENT_STATE): processes it does not name are gone."""
        old = self._agent(agent).processes
        new: dict[str, ProcessView] = {}
        for entry in entries:
            view = old.get(entry.name) or ProcessView()
            view.state = ProcessState(entry.state)
            view.restarts = entry.restarts
            new[entry.name] = view
        self.agents[agent].processes = new

    def stats_reported(self, agent: str, stats: Iterable[ProcessStats]) -> None:
        """CPU and RSS of the processes measured; the others measured nothing (0)."""
        processes = self._agent(agent).processes
        for view in processes.values():
            view.cpu_percent, view.rss_bytes = 0.0, 0
        for sample in stats:
            view = processes.setdefault(sample.name, ProcessView())
            view.cpu_percent = sample.cpu_percent
            view.rss_bytes = sample.rss
            view.restarts = sample.restarts
