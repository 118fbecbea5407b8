"""Read-only answers for the console: records from the model, shaped for the wire."""
from __future__ import annotations

from collections.abc import Iterator

import trio

from lotc.errors import LotcError, UnknownAgent
from lotc.server.command_context import CommandContext
from lotc.server.reconcile import record_report
from lotc.server.records import AgentRecord, EventRecord, ProcessSpecRecord, ProcessStatusRecord
from lotc.server.schedules import entry_of
from lotc.server.sessions import AgentSession
from protocol.enums import DesiredState, ProcessState
from protocol.messages import (
    AgentEntry,
    AgentState,
    BundleEntry,
    Event,
    ListProcesses,
    ListProcessFacts,
    ListRunVersions,
    NodeStats,
    ProcessEntry,
    ProcessFacts,
    ProcessFactsEntry,
    ProcessStats,
    RunVersion,
    RunVersions,
    ScheduleEntry,
    StatsHistory,
    StatsHistorySample,
)

REFRESH_TIMEOUT_S = 2.0  # a listing waits this long for live answers, then shows what it has
RUN_VERSIONS_CAPABILITY = "run-versions"  # lotc.agent.connection.CAPABILITIES
PROCESS_FACTS_CAPABILITY = "process-facts"  # the same
FEW_AGENTS = 100  # up to this many names, `agents` looks each up instead of listing all


def _wanted(ctl: CommandContext, pattern: str) -> set[str] | None:
    names = ctl.match_agents(pattern)
    return None if names is None else set(names)


def _agent_records(ctl: CommandContext, wanted: set[str] | None) -> list[AgentRecord]:
    """The agents table's rows for `wanted` (None: all), by name."""
    if wanted is None or len(wanted) > FEW_AGENTS:
        return [a for a in ctl.store.agents() if wanted is None or a.name in wanted]
    # A few names: point lookups, not a scan of every agent (`agents web-1` at 10,000).
    records = []
    for name in sorted(wanted):
        try:
            records.append(ctl.store.agent(name))
        except UnknownAgent:
            continue  # enrolled, never seen: not listed, as in the full listing
    return records


def agents(ctl: CommandContext, pattern: str) -> list[AgentEntry]:
    wanted = _wanted(ctl, pattern)
    running: dict[str, int] = {}
    for status in ctl.store.process_statuses(wanted):
        if status.state == ProcessState.RUNNING:
            running[status.agent] = running.get(status.agent, 0) + 1
    entries = []
    for agent in _agent_records(ctl, wanted):
        entries.append(AgentEntry(
            name=agent.name, online=agent.online, hostname=agent.hostname, address=agent.address,
            version=agent.version,
            last_seen_us=max(agent.last_seen_us, ctl.last_seen_us.get(agent.name, 0)),
            connected_us=agent.connected_us, clock_offset_us=agent.clock_offset_us,
            clock_delay_us=agent.clock_delay_us, clock_source=agent.clock_source,
            clock_measured_us=agent.clock_measured_us,
            processes=min(running.get(agent.name, 0), 0xFFFF),
        ))
    return entries


async def refresh(ctl: CommandContext, agents: set[str] | None) -> None:
    """Ask the online agents for their live state, so listings show pids and uptimes now.

    An agent that does not answer in time keeps its last reported state.
    """
    sessions = ctl.online(agents)

    async def one(session: AgentSession) -> None:
        try:
            reply = await session.request(ListProcesses(pattern=""), REFRESH_TIMEOUT_S)
            if isinstance(reply.body, AgentState):
                record_report(ctl, session.name, reply.body)
            if RUN_VERSIONS_CAPABILITY in session.hello.capabilities:  # agents of release 1:
                versions = await session.request(ListRunVersions(pattern=""),  # never asked
                                                 REFRESH_TIMEOUT_S)
                if isinstance(versions.body, RunVersions):
                    ctl.run_versions[session.name] = {
                        run.process: run.sha256 for run in versions.body.runs}
            if PROCESS_FACTS_CAPABILITY in session.hello.capabilities:
                facts = await session.request(ListProcessFacts(pattern=""), REFRESH_TIMEOUT_S)
                if isinstance(facts.body, ProcessFacts):
                    ctl.process_facts[session.name] = {
                        entry.process: entry.facts for entry in facts.body.processes}
        except LotcError:
            return

    async with trio.open_nursery() as nursery:
        for session in sessions:
            nursery.start_soon(one, session)


async def processes(ctl: CommandContext, pattern: str) -> list[ProcessEntry]:
    """Desired and actual side by side: one entry per process the model or an agent knows."""
    wanted = _wanted(ctl, pattern)
    await refresh(ctl, wanted)
    # Only the wanted agents' rows (the model filters with one indexed clause).
    specs = {(p.agent, p.name): p for p in ctl.store.processes(wanted)}
    statuses = {(s.agent, s.name): s for s in ctl.store.process_statuses(wanted)}
    entries = []
    for key in sorted(specs.keys() | statuses.keys()):
        if wanted is not None and key[0] not in wanted:
            continue
        entries.append(_process_entry(key[0], key[1], specs.get(key), statuses.get(key)))
    return entries


def run_versions(ctl: CommandContext, pattern: str) -> list[RunVersion]:
    """What the last refresh learned (`ps` asks LIST_PROCESSES first, which refreshes)."""
    wanted = _wanted(ctl, pattern)
    return [RunVersion(agent=agent, process=name, sha256=sha)
            for agent, runs in sorted(ctl.run_versions.items())
            if wanted is None or agent in wanted
            for name, sha in sorted(runs.items())]


def process_facts(ctl: CommandContext, pattern: str) -> list[ProcessFactsEntry]:
    """What the last refresh learned of each run beyond its ProcessEntry (health...)."""
    wanted = _wanted(ctl, pattern)
    return [ProcessFactsEntry(agent=agent, process=name, facts=facts)
            for agent, known in sorted(ctl.process_facts.items())
            if wanted is None or agent in wanted
            for name, facts in sorted(known.items())]


def _process_entry(
    agent: str, name: str, spec: ProcessSpecRecord | None, status: ProcessStatusRecord | None
) -> ProcessEntry:
    return ProcessEntry(
        agent=agent, name=name,
        bundle=spec.bundle if spec else (status.bundle if status else ""),
        revision=spec.revision if spec else 0,
        state=status.state if status else ProcessState.NONE,
        desired=spec.desired if spec else DesiredState.EXITED,
        pid=status.pid if status else 0,
        exit_code=status.exit_code if status else -1,
        exit_signal=status.exit_signal if status else 0,
        restarts=status.restarts if status else 0,
        started_us=status.started_us if status else 0,
        last_liveness_us=status.last_liveness_us if status else 0,
        status=status.status if status else "",
    )


async def bundles(ctl: CommandContext, pattern: str) -> list[BundleEntry]:
    """Desired bundles; stored_us is when the agent reported holding that version (0: not yet)."""
    wanted = _wanted(ctl, pattern)
    await refresh(ctl, wanted)
    held = {(b.agent, b.name): b for b in ctl.store.reported_bundles(wanted)}
    entries = []
    for b in ctl.store.desired_bundles(wanted):
        if wanted is not None and b.agent not in wanted:
            continue
        have = held.get((b.agent, b.name))
        stored = have.stored_us if have is not None and have.sha256 == b.sha256 else 0
        entries.append(BundleEntry(agent=b.agent, name=b.name, sha256=b.sha256, kind=b.kind,
                                   size=b.size, stored_us=stored))
    return entries


def event_message(record: EventRecord) -> Event:
    return Event(
        seq=record.seq or 0, agent=record.agent, time_us=record.time_us, kind=record.kind,
        process=record.process, old_state=record.old_state, new_state=record.new_state,
        exit_code=record.exit_code, signal=record.signal, message=record.message,
        schedule_id=record.schedule_id,
    )


def events(ctl: CommandContext, pattern: str, since_us: int, limit: int) -> list[EventRecord]:
    return ctl.store.events(agent=_wanted(ctl, pattern), since_us=since_us, limit=limit)


def stats_histories(ctl: CommandContext, pattern: str, since_us: int,
                    limit: int) -> Iterator[StatsHistory]:
    """One history per agent the selector matches (UnknownAgent if none), read
    one agent at a time so 'all' never holds every agent's history at once."""
    agents = ctl.resolve_targets(pattern)  # a plain UnknownAgent for a typo
    ctl.flush()  # include what arrived since the last tick
    for agent in agents:
        yield _stats_history(ctl, agent, since_us, limit)


def _stats_history(ctl: CommandContext, agent: str, since_us: int, limit: int) -> StatsHistory:
    records = ctl.store.stats_history(agent, since_us, limit)
    samples = tuple(  # the model stores exactly NodeStats' fields (controller.stats_report)
        StatsHistorySample(time_us=r.time_us, node=NodeStats(**r.node))  # type: ignore[arg-type]
        for r in records
    )
    latest = tuple(ProcessStats(**p) for p in records[-1].processes) if records else ()
    return StatsHistory(agent=agent, samples=samples, processes=latest)


async def schedules(ctl: CommandContext, pattern: str) -> list[ScheduleEntry]:
    wanted = _wanted(ctl, pattern)
    await refresh(ctl, wanted)
    return [entry_of(r) for r in ctl.store.schedules(None if wanted is None else wanted)]
