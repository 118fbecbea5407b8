"""What the REPL knows of the server's state, for completion and the toolbar.

`ServerState` is an immutable snapshot: the completer and the toolbar read
whatever snapshot is current and never wait for the server. `fetch_state`
builds a new one with the ordinary list requests; the REPL's session calls it
in the background (on connect, after commands, on events, every few seconds)
and swaps the snapshot in whole, so a reader never sees half an update.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import trio

from admin_console.errors import ConnectionLost
from admin_console.render import enum_word
from lotc.errors import LotcError
from lotc.selectors import effective_labels
from protocol.messages import (
    AgentEntry,
    AgentList,
    BundleEntry,
    BundleList,
    LabelList,
    LabelsEntry,
    ListAgents,
    ListBundles,
    ListLabels,
    ListProcesses,
    ListSchedules,
    Message,
    ProcessEntry,
    ProcessList,
    ScheduleEntry,
    ScheduleList,
)

if TYPE_CHECKING:
    from admin_console.client import AdminClient

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class AgentInfo:
    name: str
    online: bool


@dataclass(frozen=True)
class LabelsInfo:
    agent: str
    labels: tuple[tuple[str, str], ...]  # in effect (lotc.selectors.effective_labels), sorted
    console_keys: tuple[str, ...]  # those set from the console (what unlabel can remove)


@dataclass(frozen=True)
class ProcessInfo:
    agent: str
    name: str
    state: str  # "running", "exited"... as `ps` shows it


@dataclass(frozen=True)
class BundleInfo:
    agent: str
    name: str


@dataclass(frozen=True)
class ScheduleInfo:
    id: int
    agent: str
    process: str
    action: str


@dataclass(frozen=True)
class ServerState:
    agents: tuple[AgentInfo, ...] = ()
    processes: tuple[ProcessInfo, ...] = ()
    bundles: tuple[BundleInfo, ...] = ()
    schedules: tuple[ScheduleInfo, ...] = ()
    labels: tuple[LabelsInfo, ...] = ()
    fetched_at: float | None = None  # time.monotonic() of the fetch; None: never fetched

    @property
    def online_agents(self) -> int:
        return sum(1 for agent in self.agents if agent.online)


async def fetch_state(client: AdminClient, previous: ServerState, *,
                      schedules: bool, labels: bool = False) -> ServerState:
    """A fresh snapshot; a part the server could not give keeps its previous value.

    `schedules` says whether to ask for them: a server without schedule support
    would take LIST_SCHEDULES as a protocol violation and close the connection.
    `labels` likewise for LIST_LABELS. ConnectionLost propagates (the session reconnects); other errors are logged.
    """
    parts: dict[str, tuple[Any, ...]] = {}
    lost: list[ConnectionLost] = []  # raised once, after the nursery, not as a group

    async def one(key: str, request: Message, reply_type: type, convert: Callable[[Any], Any],
                  reply_field: str | None = None) -> None:
        try:
            frames = await client.request(request)
        except ConnectionLost as exc:
            lost.append(exc)
            return
        except LotcError as exc:
            logger.debug("refreshing %s failed: %s", key, exc)
            return
        parts[key] = tuple(convert(entry) for frame in frames
                           if isinstance(frame.body, reply_type)
                           for entry in getattr(frame.body, reply_field or key))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(one, "agents", ListAgents(pattern=""), AgentList, _agent)
        nursery.start_soon(one, "processes", ListProcesses(pattern=""), ProcessList, _process)
        nursery.start_soon(one, "bundles", ListBundles(pattern=""), BundleList, _bundle)
        if schedules:
            nursery.start_soon(one, "schedules", ListSchedules(pattern=""), ScheduleList,
                               _schedule)
        if labels:
            nursery.start_soon(one, "labels", ListLabels(pattern=""), LabelList, _labels,
                               "agents")
    if lost:
        raise lost[0]
    return ServerState(
        agents=parts.get("agents", previous.agents),
        processes=parts.get("processes", previous.processes),
        bundles=parts.get("bundles", previous.bundles),
        schedules=parts.get("schedules", previous.schedules),
        labels=parts.get("labels", previous.labels),
        fetched_at=time.monotonic(),
    )


def _agent(entry: AgentEntry) -> AgentInfo:
    return AgentInfo(entry.name, entry.online)


def _labels(entry: LabelsEntry) -> LabelsInfo:
    effective = effective_labels({x.key: x.value for x in entry.announced},
                                 {x.key: x.value for x in entry.console})
    return LabelsInfo(entry.agent, tuple(sorted(effective.items())),
                      tuple(x.key for x in entry.console))


def _process(entry: ProcessEntry) -> ProcessInfo:
    return ProcessInfo(entry.agent, entry.name, enum_word(entry.state))


def _bundle(entry: BundleEntry) -> BundleInfo:
    return BundleInfo(entry.agent, entry.name)


def _schedule(entry: ScheduleEntry) -> ScheduleInfo:
    return ScheduleInfo(entry.id, entry.agent, entry.process, enum_word(entry.action))
