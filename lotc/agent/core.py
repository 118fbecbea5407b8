"""The agent's local parts behind one face, in the wire's terms.

The link (connection.py, requests.py) speaks protocol messages; the
supervisor, store, sampler and outbox speak Python. AgentCore translates
between the two so neither side knows the other: a ProcStart becomes a
ProcessSpec, a ProcessEvent becomes a numbered Event in the outbox, the
supervisor's list becomes an AGENT_STATE report.
"""
from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

import trio

from lotc.actions import Verb, for_action
from lotc.agent.cgroup_layout import Layout, remove_parents
from lotc.agent.cgroup_layout import detect as detect_cgroups
from lotc.agent.clock import CorrectedClock
from lotc.agent.outbox import EventOutbox
from lotc.agent.process import ProcessInfo, ProcessSpec
from lotc.agent.schedule_store import ScheduleEventInfo, ScheduleSpec, ScheduleState
from lotc.agent.scheduler import SYNC_WAIT_S, Scheduler
from lotc.agent.stats import StatsSampler
from lotc.agent.store import BundleInfo, BundleStore
from lotc.agent.supervisor import ProcessEvent, Supervisor
from lotc.errors import BundleInUse, InvalidRequest, UnknownProcess
from lotc.options import spec_fields
from lotc.parse.crontimes import format_us
from lotc.process_states import ALIVE
from protocol import messages as m
from protocol.enums import EventKind, ProcessState, StreamKind

logger = logging.getLogger(__name__)

Emit = Callable[[StreamKind, list[str]], Awaitable[None]]
DEFAULT_GRACE_S = 10.0
DEFAULT_BACKOFF_BASE_S = 0.5
DEFAULT_BACKOFF_CAP_S = 30.0
DEFAULT_RESTART_WINDOW_S = 60.0


def spec_from_message(msg: m.ProcStart | m.ProcStartOptions) -> ProcessSpec:
    """Milliseconds on the wire, seconds in the supervisor; 0 means "the default"."""
    options = getattr(msg, "options", ())
    return ProcessSpec(
        name=msg.name, bundle=msg.bundle, argv=tuple(msg.argv),
        env={kv.key: kv.value for kv in msg.env}, cwd=msg.cwd, restart=msg.restart,
        liveness_timeout=msg.liveness_ms / 1000,
        backoff_base=msg.backoff_base_ms / 1000 or DEFAULT_BACKOFF_BASE_S,
        backoff_cap=msg.backoff_cap_ms / 1000 or DEFAULT_BACKOFF_CAP_S,
        restart_limit=msg.restart_limit,
        restart_window=msg.restart_window_s or DEFAULT_RESTART_WINDOW_S,
        grace=msg.grace_ms / 1000 or DEFAULT_GRACE_S,
        revision=msg.revision,
        **spec_fields((kv.key, kv.value) for kv in options),
    )


def process_entry(info: ProcessInfo) -> m.ProcessEntry:
    return m.ProcessEntry(
        agent="", name=info.name, bundle=info.bundle, revision=info.spec.revision,
        state=info.state, desired=info.desired, pid=info.pid or 0,
        exit_code=-1 if info.exit_code is None else info.exit_code,
        exit_signal=info.exit_signal or 0, restarts=info.restarts,
        started_us=info.started_at, last_liveness_us=info.last_liveness, status=info.status[:1000],
    )


def schedule_entry(state: ScheduleState) -> m.ScheduleEntry:
    spec = state.spec
    return m.ScheduleEntry(
        id=spec.id, agent="", process=spec.process, action=spec.action, signal=spec.signal,
        kind=spec.kind, cron=spec.cron, tz=spec.tz, at_us=spec.at_us,
        next_fire_us=state.next_fire_us, last_fire_us=state.last_fire_us,
    )


def bundle_entry(info: BundleInfo) -> m.BundleEntry:
    return m.BundleEntry(agent="", name=info.name, sha256=info.sha256_bytes, kind=info.kind,
                         size=info.size, stored_us=info.stored_us)


class AgentCore:
    def __init__(self, state_dir: Path, clock: CorrectedClock, *,
                 sync_wait_s: float = SYNC_WAIT_S) -> None:
        self.state_dir = state_dir
        self.clock = clock
        # Old versions wait for the supervisor's re-adoption: prune_versions() after it.
        self.store = BundleStore(state_dir / "bundles", prune_on_open=False)
        self.outbox = EventOutbox(state_dir / "outbox")
        self.sampler = StatsSampler(state_dir)
        self.cgroups = detect_cgroups(state_dir)  # blocking, once: cgroupfs is in memory
        _announce(self.cgroups)
        self.supervisor = Supervisor(state_dir / "processes", self.store.acquire,
                                     self.on_process_event, clock=clock.now_us,
                                     versions=self.store, layout=self.cgroups)
        self.scheduler = Scheduler(state_dir / "schedules", clock, self.fire_schedule,
                                   self.on_schedule_event, sync_wait_s=sync_wait_s)
        self.clock_synced = trio.Event()  # replaced after each sync: the link reports it

    async def prune_versions(self) -> None:
        """Once the processes are re-adopted: drop the old versions none of them runs in."""
        await trio.to_thread.run_sync(self.store.prune)

    def note_clock_sync(self) -> None:
        self.scheduler.clock_changed()
        sample = self.clock.sample
        self.add_event(EventKind.CLOCK_SYNC, "",
                       f"clock offset {sample.offset_us / 1000:+.1f} ms from {sample.source}")
        self.clock_synced.set()
        self.clock_synced = trio.Event()

    # ---------------------------------------------------------------- events

    def on_process_event(self, event: ProcessEvent) -> None:
        self.add_event(event.kind, event.process, event.reason, old=event.old_state,
                       new=event.new_state, exit_code=event.exit_code, signal=event.signal)

    def add_event(self, kind: EventKind, process: str, message: str, *,
                  old: ProcessState = ProcessState.NONE, new: ProcessState = ProcessState.NONE,
                  exit_code: int | None = None, signal: int | None = None,
                  schedule_id: int = 0) -> None:
        self.outbox.add(m.Event(
            seq=0, agent="", time_us=self.clock.now_us(), kind=kind, process=process,
            old_state=old, new_state=new, exit_code=-1 if exit_code is None else exit_code,
            signal=signal or 0, message=message[:1000], schedule_id=schedule_id,
        ))

    def on_schedule_event(self, info: ScheduleEventInfo) -> None:
        failed = bool(info.error) or info.kind == EventKind.SCHEDULE_MISSED
        self.add_event(info.kind, info.process, info.message(),
                       schedule_id=0 if failed else info.schedule_id)

    def bundle_stored(self, info: BundleInfo) -> None:
        self.add_event(EventKind.BUNDLE_STORED, "",
                       f"bundle {info.name} stored ({info.size} bytes, sha256 {info.sha256[:12]})")

    # ---------------------------------------------------------------- reports

    def time_info(self) -> m.TimeInfo:
        sample = self.clock.sample
        return m.TimeInfo(source=sample.source, offset_us=sample.offset_us,
                          delay_us=sample.delay_us, stratum=sample.stratum,
                          measured_us=sample.measured_us)

    async def agent_state(self) -> m.AgentState:
        return m.AgentState(
            bundles=tuple(bundle_entry(b) for b in self.store.list()),
            processes=tuple(process_entry(p) for p in self.supervisor.list()),
            schedules=tuple(schedule_entry(s) for s in self.scheduler.list()),
        )

    def bundle_versions(self, name: str) -> m.BundleVersions:
        """The versions kept of `name` (every bundle when ""), newest first."""
        names = [name] if name else [b.name for b in self.store.list()]
        entries = []
        for bundle in names:
            current = self.store.get(bundle).sha256
            entries += [m.BundleVersion(agent="", name=v.name, sha256=v.sha256_bytes,
                                        kind=v.kind, size=v.size, stored_us=v.stored_us,
                                        current=v.sha256 == current)
                        for v in self.store.versions(bundle)]
        return m.BundleVersions(versions=tuple(entries))

    async def switch_bundle(self, name: str, sha256: str) -> m.BundleVersions:
        """Make a kept version current again (new runs use it); its entry."""
        info = await trio.to_thread.run_sync(self.store.switch, name, sha256)
        return m.BundleVersions(versions=(m.BundleVersion(
            agent="", name=info.name, sha256=info.sha256_bytes, kind=info.kind,
            size=info.size, stored_us=info.stored_us, current=True),))

    def process_facts(self) -> m.ProcessFacts:
        """What `ps` shows beyond a ProcessEntry, per process (see process_facts)."""
        return m.ProcessFacts(processes=tuple(
            m.ProcessFactsEntry(agent="", process=info.name, facts=tuple(
                m.KeyValue(key=key, value=value) for key, value in process_facts(info)))
            for info in self.supervisor.list()))

    def run_versions(self) -> m.RunVersions:
        """The bundle version each process's current (or last) run uses, where still known
        (a version is forgotten once no run holds it and another replaced it)."""
        runs = []
        for info in self.supervisor.list():
            version = self.store.version_of(Path(info.bundle_path)) if info.bundle_path else None
            if version is not None:
                runs.append(m.RunVersion(agent="", process=info.name,
                                         sha256=version.sha256_bytes))
        return m.RunVersions(runs=tuple(runs))

    def running_count(self) -> int:
        return sum(1 for p in self.supervisor.list() if p.state == ProcessState.RUNNING)

    async def stats_report(self) -> m.StatsReport:
        infos = [p for p in self.supervisor.list() if p.pid]
        node, per_process = await self.sampler.sample(
            {p.name: p.pid for p in infos if p.pid},
            {p.name: p.restarts for p in infos},
            {p.name: p.last_liveness for p in infos},
            self.supervisor.cgroups(),
        )
        return m.StatsReport(
            agent="", time_us=self.clock.now_us(),
            node=m.NodeStats(
                cpu_percent=node.cpu_percent, load1=node.load1, load5=node.load5,
                load15=node.load15, mem_total=node.mem_total, mem_used=node.mem_used,
                swap_used=node.swap_used, disk_read_bytes=node.disk_read_bytes,
                disk_write_bytes=node.disk_write_bytes, net_sent_bytes=node.net_sent_bytes,
                net_recv_bytes=node.net_recv_bytes, disk_used=node.disk_used,
                disk_total=node.disk_total, uptime_s=node.uptime_s,
            ),
            processes=tuple(
                m.ProcessStats(name=s.name, pid=s.pid, cpu_percent=s.cpu_percent, rss=s.rss,
                               threads=min(s.threads, 0xFFFF),
                               open_files=min(s.open_files, 0xFFFF), restarts=s.restarts,
                               last_liveness_us=s.last_liveness_us)
                for s in per_process.values()
            ),
        )

    # ---------------------------------------------------------------- commands

    async def start(self, msg: m.ProcStart | m.ProcStartOptions) -> str:
        """Idempotent: the revision already running is left alone; another one replaces it."""
        spec = spec_from_message(msg)
        try:
            current = self.supervisor.get(msg.name)
        except UnknownProcess:
            current = None
        if current is not None:
            if current.spec.revision == msg.revision and msg.revision and current.state in ALIVE:
                return f"already running revision {msg.revision} (pid {current.pid})"
            await self.supervisor.remove(msg.name)
        info = await self.supervisor.start(spec)
        return f"started pid {info.pid}"

    async def control(self, verb: Verb, name: str, *, grace: float | None = None,
                      signal: str = "SIGKILL") -> str:
        """Carry out one verb of lotc.actions on a recorded process: the one place each
        verb becomes its supervisor call (console commands and schedules alike)."""
        sup = self.supervisor
        match verb:
            case Verb.START:  # a schedule's start: the recorded spec, unless it runs
                info = sup.get(name)
                if info.state in ALIVE:
                    return f"already running (pid {info.pid})"
                info = await sup.start(info.spec)
                return f"started pid {info.pid}"
            case Verb.STOP:
                return f"stopped ({await sup.stop(name)})"
            case Verb.RESUME:
                return f"resumed ({await sup.resume(name)})"
            case Verb.TERMINATE:
                before = sup.get(name).state
                info = await sup.terminate(name, grace)
                return _terminated(before, info)
            case Verb.KILL:
                whom = await sup.kill(name, signal)
                return f"sent {signal.upper()} to {whom}"
            case Verb.RESTART:
                info = await sup.restart(name)
                return f"restarted pid {info.pid}"
            case Verb.REMOVE:
                await sup.remove(name)
                for held in self.scheduler.list():  # its schedules have nothing left to act on
                    if held.spec.process == name:
                        await self.scheduler.clear(held.spec.id)
                return "removed"
        raise InvalidRequest(f"unknown verb {verb!r}")

    # ---------------------------------------------------------------- schedules

    async def set_schedule(self, entry: m.ScheduleEntry) -> str:
        state = await self.scheduler.set(ScheduleSpec(
            id=entry.id, process=entry.process, action=entry.action, signal=entry.signal,
            kind=entry.kind, cron=entry.cron, tz=entry.tz, at_us=entry.at_us))
        return f"schedule {entry.id} set; next fire at {format_us(state.next_fire_us)}" \
            if state.next_fire_us else f"schedule {entry.id} set; nothing left to fire"

    async def clear_schedule(self, schedule_id: int) -> str:
        await self.scheduler.clear(schedule_id)
        return f"schedule {schedule_id} removed"

    async def fire_schedule(self, spec: ScheduleSpec) -> None:
        """What a schedule does when its time comes: the same as the console command
        (an unknown process raises UnknownProcess, reported in the event)."""
        await self.control(for_action(spec.action).verb, spec.process,
                           signal=spec.signal or "SIGKILL")

    async def remove_bundle(self, name: str) -> str:
        users = self.supervisor.uses_bundle(name)
        if users:
            raise BundleInUse(f"bundle {name!r} is used by running processes {', '.join(users)}")
        for info in self.supervisor.list():  # ended processes of this bundle cannot run again
            if info.bundle == name:
                await self.supervisor.remove(info.name)
        self.store.remove(name)
        self.add_event(EventKind.BUNDLE_REMOVED, "", f"bundle {name} removed")
        return f"removed {name}"

    async def read_logs(self, name: str, lines: int, follow: bool, emit: Emit) -> None:
        for stream in (StreamKind.STDOUT, StreamKind.STDERR):
            await emit(stream, await self.supervisor.tail_logs(name, lines, stream,
                                                               timestamps=True))
        if follow:
            async for stream, batch in self.supervisor.follow_logs(name, timestamps=True):
                await emit(stream, batch)

    def close(self) -> None:
        self.outbox.close()
        remove_parents(self.cgroups)  # only the empty ones: running processes keep theirs


def _announce(layout: Layout) -> None:
    if layout.missing:
        logger.warning("cgroups %s; missing: %s", layout.describe(), "; ".join(layout.missing))
    else:
        logger.info("cgroups %s", layout.describe())


def process_facts(info: ProcessInfo) -> list[tuple[str, str]]:
    """Label/text facts of one process: its health (with a check), whether it is ready,
    and how often the kernel ended it for its memory limit (with one, or once it did)."""
    facts = []
    if info.spec.check:
        facts += [("health", info.health or "-"), ("health-why", info.health_why or "-")]
    facts.append(("ready", "yes" if info.ready else "no"))
    if info.spec.memory or info.oom_kills:
        facts.append(("oom-kills", str(info.oom_kills)))
    return facts


def _terminated(before: ProcessState, info: ProcessInfo) -> str:
    """What a terminate did, from the state it found: the last run's exit is news only if
    this terminate ended that run."""
    if before in (ProcessState.EXITED, ProcessState.FAILED):
        return f"had already ended ({_ending(info)}); it stays down"
    if before == ProcessState.BACKOFF:
        return "terminated while waiting to restart: it will not be started again"
    return f"terminated ({_ending(info)})"


def _ending(info: ProcessInfo) -> str:
    if info.exit_signal:
        return f"ended by signal {info.exit_signal}"
    if info.exit_code is not None:
        return f"exit code {info.exit_code}"
    return "ended"
