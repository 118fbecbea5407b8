"""What a command module may use of the server: one small, named interface.

The command modules (processes, bundles, schedules, queries, reconcile, logs,
tokens) take a `CommandContext`, not the Controller: they see the agents online
one at a time (`session`, `online`), the target rules, the clock, and the part
of the model a command reads or records (`CommandStore`, 26 of the model's
methods: none of the presence, event-ingest, stats-ingest or authentication
ones, which belong to the controller). The Controller is one (structurally:
mypy checks it where the faces pass it). A command needing more adds it here,
where it shows.
"""
from __future__ import annotations

from collections.abc import Collection, Iterable
from pathlib import Path
from typing import Protocol

from lotc.server.config import ServerConfig
from lotc.server.decisions import Close, Link
from lotc.server.fleet_view import FleetView
from lotc.server.records import (
    AgentRecord,
    BundleRecord,
    EventRecord,
    ProcessSpecRecord,
    ProcessStatusRecord,
    ScheduleRecord,
    StatsRecord,
)
from lotc.server.sessions import AgentSession
from protocol.enums import BundleKind, DesiredState, EventKind, Role
from protocol.messages import KeyValue

Agents = str | Collection[str] | None  # one agent, some, or all (None)


class CommandStore(Protocol):
    """The model as the commands use it (lotc/server/model*.py implement it)."""

    # -- what the listings read
    def agent(self, name: str) -> AgentRecord: ...
    def agents(self) -> list[AgentRecord]: ...
    def processes(self, agent: Agents = None) -> list[ProcessSpecRecord]: ...
    def process_statuses(self, agent: Agents = None) -> list[ProcessStatusRecord]: ...
    def find_process(self, agent: str, name: str) -> ProcessSpecRecord | None: ...
    def desired_bundles(self, agent: Agents = None) -> list[BundleRecord]: ...
    def reported_bundles(self, agent: Agents = None) -> list[BundleRecord]: ...
    def schedules(self, agent: Agents = None) -> list[ScheduleRecord]: ...
    def events(self, agent: Agents = None, since_us: int = 0, after_id: int = 0,
               limit: int = 100, newest: bool | None = None) -> list[EventRecord]: ...
    def stats_history(self, agent: str, since_us: int = 0,
                      limit: int = 1000) -> list[StatsRecord]: ...

    # -- the desired state a command records
    def put_process(self, spec: ProcessSpecRecord,
                    keep_revision: bool = False) -> ProcessSpecRecord: ...
    def set_desired_state(self, agent: str, name: str, desired: DesiredState,
                          now_us: int | None = None) -> ProcessSpecRecord: ...
    def remove_process(self, agent: str, name: str) -> bool: ...
    def set_desired_bundle(self, agent: str, name: str, sha256: bytes, kind: BundleKind,
                           size: int, now_us: int) -> BundleRecord: ...
    def remove_desired_bundle(self, agent: str, name: str) -> bool: ...
    def add_schedule(self, record: ScheduleRecord) -> ScheduleRecord: ...
    def remove_schedule(self, schedule_id: int) -> ScheduleRecord: ...
    def update_schedule_fire(self, schedule_id: int, next_fire_us: int,
                             last_fire_us: int) -> ScheduleRecord: ...

    # -- what an agent reported (reconcile, refresh)
    def replace_process_statuses(self, agent: str,
                                 statuses: Iterable[ProcessStatusRecord]) -> None: ...
    def replace_reported_bundles(self, agent: str, bundles: Iterable[BundleRecord]) -> None: ...

    # -- bundle contents (uploads)
    def partial_blob_path(self, sha256: bytes) -> Path: ...
    def blob_path(self, sha256: bytes) -> Path: ...
    def commit_blob(self, temp_path: Path, sha256: bytes, verify: bool = True) -> Path: ...
    def drop_blob_if_unused(self, sha256: bytes) -> bool: ...

    # -- tokens (enrol, revoke)
    def create_token(self, role: Role, name: str, now_us: int) -> str: ...
    def revoke_token(self, name: str, now_us: int) -> bool: ...


class CommandContext(Protocol):
    """The server as a command sees it (lotc/server/controller.py implements it)."""

    config: ServerConfig
    # agent -> process -> SHA-256 of its run's bundle version (see Controller)
    run_versions: dict[str, dict[str, bytes]]
    process_facts: dict[str, dict[str, tuple[KeyValue, ...]]]  # agent -> process -> facts
    last_seen_us: dict[str, int]  # fresher than the store's (batched writes)
    fleet: FleetView  # the in-memory picture /metrics reads (fleet_view.py)

    @property
    def store(self) -> CommandStore: ...
    def now_us(self) -> int: ...

    # -- agents online
    def session(self, agent: str) -> AgentSession | None:
        """The agent's connection, None while it is offline."""
    def online(self, agents: Collection[str] | None = None) -> list[AgentSession]:
        """The sessions of these agents that are online (all with None)."""

    # -- targets
    def resolve_targets(self, pattern: str) -> list[str]: ...
    def match_agents(self, pattern: str) -> list[str] | None: ...

    # -- what a command tells the controller
    def server_event(self, agent: str, kind: EventKind, message: str,
                     process: str = "") -> None: ...
    def cut_off(self, name: str, spare: Link | None = None) -> list[Close]: ...
    def flush(self, *, all_seen: bool = False) -> None: ...
