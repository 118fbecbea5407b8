"""The controller: every decision the server makes, with no sockets in sight.

Theory of operation
-------------------
The agent server and the admin server translate frames into calls on this
object and its replies back into frames; the model stores. The controller does
no I/O: where a peer must hear something or be cut off, it returns a decision
(decisions.py: close this link with this error, acknowledge these events) and
the face that called it, or the timed duty (duties.py), carries it out. The controller
holds what only exists while the server runs: the connected agents'
sessions, the agents heard from since the last flush (heartbeats are batched
into one model write per tick, so 10,000 agents cost one UPDATE a tick, not
10,000), and the subscribers following events.

An agent's online verdict: a connection silent for `missed_heartbeats`
intervals is closed; an agent without a connection for `offline_grace_s`
is declared offline (an event). A blip shorter than that, or a reconnect
within it, never flaps the verdict.

Commands to agents (start, stop, upload...) are first recorded as desired
state in the model, then sent to the agents that are online; an offline
agent gets them when it reconnects (reconcile.py). Each command answers per
agent, in RESULTS.
"""
from __future__ import annotations

import dataclasses
import itertools
import logging
import math
import time
from collections.abc import AsyncIterator, Callable, Collection
from contextlib import asynccontextmanager

import trio

from lotc import __version__, timing
from lotc.errors import (
    InvalidRequest,
    TokenRevoked,
    UnknownAgent,
    UnknownSchedule,
)
from lotc.process_states import ended_on_request
from lotc.selectors import effective_labels, parse_labels, parse_selector, select
from lotc.server.config import ServerConfig
from lotc.server.decisions import Ack, Close, Link
from lotc.server.desired import desired_after_fire
from lotc.server.model import Model
from lotc.server.records import EventRecord, StatsRecord
from lotc.server.sessions import AgentSession
from protocol.enums import DesiredState, EventKind, ProcessState, Role
from protocol.messages import (
    AgentLabels,
    Event,
    Hello,
    KeyValue,
    StatsReport,
    TimeInfo,
    Timing,
    Welcome,
)

logger = logging.getLogger(__name__)

SEEN_ROWS_PER_TICK = 500  # last-seen rows written per verdict tick (see _take_heard)
ROWS_PER_STEP = 50  # rows written between two checkpoints (see flush_in_steps)
LABELS_CAPABILITY = "labels"  # lotc.agent.connection.CAPABILITIES
EVENT_SUBSCRIBER_BUFFER = 1024  # events a follower may lag behind before it is cut off


def wall_clock_us() -> int:
    return time.time_ns() // 1000


class Controller:
    def __init__(
        self, model: Model, config: ServerConfig, now_us: Callable[[], int] = wall_clock_us
    ) -> None:
        self.model = model
        self.config = config
        self.now_us = now_us
        self.sessions: dict[str, AgentSession] = {}
        self._heard_from: set[str] = set()
        self._unwritten_seen: set[str] = set()
        self._seen_to_write: dict[str, None] = {}  # due, written SEEN_ROWS_PER_TICK a tick
        self._seen_written_at = -math.inf
        self.last_seen_us: dict[str, int] = {}  # fresher than the model's (see flush)
        self._pending_stats: list[StatsRecord] = []
        self._disconnected_at: dict[str, float] = {}
        self._event_subscribers: set[trio.MemorySendChannel[EventRecord]] = set()
        self._consoles: dict[str, set[Link]] = {}
        self._data_version = model.data_version()  # see revocations()
        # agent -> process -> SHA-256 of the bundle version its run uses, as the agent said
        # at the last `ps` refresh (memory only: the agent is asked again at the next one)
        self.run_versions: dict[str, dict[str, bytes]] = {}
        self.process_facts: dict[str, dict[str, tuple[KeyValue, ...]]] = {}  # from refresh

    # ------------------------------------------------------------ what commands use
    # (lotc/server/command_context.py: the interface the command modules see)

    @property
    def store(self) -> Model:
        return self.model

    def session(self, agent: str) -> AgentSession | None:
        return self.sessions.get(agent)

    def online(self, agents: Collection[str] | None = None) -> list[AgentSession]:
        if agents is None:
            return list(self.sessions.values())
        return [s for name, s in self.sessions.items() if name in agents]

    # ------------------------------------------------------------ authentication

    def token_key(self, role: Role, name: str) -> bytes | None:
        return self.model.token_key(role, name)

    def revoked_token_key(self, role: Role, name: str) -> bytes | None:
        return self.model.revoked_token_key(role, name)

    def welcome(self, hello: Hello) -> Welcome:
        last_seq = self.model.last_event_seq(hello.name) if hello.role == Role.AGENT else 0
        return Welcome(
            server=f"lotc {__version__}",
            heartbeat_ms=int(self.config.heartbeat_interval_s * 1000),
            max_body=self.config.max_body,
            last_event_seq=last_seq,
        )

    def timing_for(self, hello: Hello) -> Timing | None:
        """The TIMING to send right after WELCOME: only to clients that announce "timing"
        (an older client gets nothing it cannot read)."""
        if timing.CAPABILITY not in hello.capabilities:
            return None
        return self.config.timing.message_for(hello.role)

    # ------------------------------------------------------------ consoles and revocation

    def admin_connected(self, name: str, link: Link) -> None:
        self._consoles.setdefault(name, set()).add(link)

    def admin_disconnected(self, name: str, link: Link) -> None:
        self._consoles.get(name, set()).discard(link)

    def cut_off(self, name: str, spare: Link | None = None) -> list[Close]:
        """Every connection authenticated as `name` is to be closed (its token was revoked).

        `spare`, the console that asked for the revocation, is left to its handler:
        it must hear its OK before its own connection closes.
        """
        links = [link for link in self._consoles.pop(name, set()) if link is not spare]
        session = self.sessions.get(name)
        if session is not None:
            links.append(session.framed)
            self.agent_disconnected(session)
            # No grace for a revoked agent: it is not coming back.
            self._disconnected_at.pop(name, None)
            self.model.agent_offline(name, self.now_us())
            self.server_event(name, EventKind.AGENT_OFFLINE, "token revoked")
        if links:
            logger.warning("cut off %d connection(s) of %s: token revoked", len(links), name)
        revoked = TokenRevoked(f"token of {name!r} was revoked")
        return [Close(link, revoked) for link in links]

    def revocations_seen(self) -> None:
        """What is revoked now is known: `revocations()` reports only what comes after."""
        self._data_version = self.model.data_version()

    def revocations(self) -> list[Close]:
        """The connections to cut off for tokens revoked by another process since the last
        call (`lotc token revoke`: SQLite's data_version moves only for other writers)."""
        current = self.model.data_version()
        if current == self._data_version:
            return []
        self._data_version = current
        closes: list[Close] = []
        for name in list(self.sessions) + list(self._consoles):
            if self.model.is_revoked(name):
                closes += self.cut_off(name)
        return closes

    # ------------------------------------------------------------ agent presence

    def agent_connected(self, session: AgentSession) -> Close | None:
        """Register a freshly authenticated agent; the newest connection of a name wins:
        the previous one, if any, is to be closed."""
        previous = self.sessions.get(session.name)
        dropped = None
        if previous is not None:
            logger.info("agent %s reconnected from %s; dropping the old connection",
                        session.name, session.address)
            previous.close()
            dropped = Close(previous.framed)
        self.sessions[session.name] = session
        self._disconnected_at.pop(session.name, None)
        was_online = self._is_online(session.name)
        self.model.agent_connected(
            session.name, session.hello.hostname, session.address,
            session.hello.software, self.now_us(),
        )
        if not was_online:
            self.server_event(session.name, EventKind.AGENT_ONLINE, f"online from {session.address}")
        return dropped

    def agent_disconnected(self, session: AgentSession, now: float | None = None) -> None:
        session.close()
        if self.sessions.get(session.name) is session:
            del self.sessions[session.name]
            self.process_facts.pop(session.name, None)  # health is not known while away
            self._disconnected_at[session.name] = trio.current_time() if now is None else now
            logger.info("agent %s disconnected; offline verdict in %.1f s unless it returns",
                        session.name, self.config.offline_grace_s)

    def _is_online(self, name: str) -> bool:
        try:
            return self.model.agent(name).online
        except UnknownAgent:
            return False

    def heard_from(self, session: AgentSession, now: float | None = None) -> None:
        session.last_seen_monotonic = trio.current_time() if now is None else now
        self._heard_from.add(session.name)

    def judge(self, now: float) -> list[Close]:
        """The verdicts at monotonic time `now`: connections silent past the limit are to
        be closed; agents absent past the grace are declared offline (an event)."""
        rule = self.config.timing  # the one rule (lotc/timing.py)
        cutoff = now - rule.agent_silence_limit_s
        # A comprehension: with 10,000 sessions this runs 40,000 times a second.
        silent = [s for s in self.sessions.values() if s.last_seen_monotonic < cutoff]
        for session in silent:
            logger.warning("agent %s silent for %.1f s: closing its connection",
                           session.name, now - session.last_seen_monotonic)
            self.agent_disconnected(session, now)
        for name, since in list(self._disconnected_at.items()):
            if now - since >= rule.offline_grace_s:
                del self._disconnected_at[name]
                self._write_true_last_seen(name)
                self.model.agent_offline(name, self.now_us())
                self.server_event(name, EventKind.AGENT_OFFLINE, "stopped answering")
        return [Close(session.framed) for session in silent]

    def flush(self, *, all_seen: bool = False) -> None:
        """Write batched reports now: every pending stats row, and a tick's share of
        last-seen times (all of them with `all_seen`)."""
        self._take_heard(all_seen)
        self._write_seen(len(self._seen_to_write) if all_seen else SEEN_ROWS_PER_TICK)
        self._write_stats(len(self._pending_stats))

    async def flush_in_steps(self) -> None:
        """`flush` for the verdict loop, a few dozen rows at a time with a checkpoint
        between: with 10,000 agents a tick's writes took 20-50 ms in one go, and every
        console request and heartbeat waited behind them (bench.server_load)."""
        self._take_heard()
        seen_left = min(SEEN_ROWS_PER_TICK, len(self._seen_to_write))
        while seen_left > 0:
            seen_left -= self._write_seen(min(ROWS_PER_STEP, seen_left))
            await trio.lowlevel.checkpoint()
        stats_left = len(self._pending_stats)  # not those that arrive meanwhile: next tick
        while stats_left > 0:
            stats_left -= self._write_stats(min(ROWS_PER_STEP, stats_left))
            await trio.lowlevel.checkpoint()

    def _take_heard(self, all_due: bool = False) -> None:
        """Last-seen times are kept in memory every tick (listings read them from there)
        but reach the model only every `seen_write_interval_s`: rewriting thousands of
        rows four times a second filled SQLite's WAL and its checkpoints stalled the
        event loop (console p99). A due batch is then written SEEN_ROWS_PER_TICK rows a
        tick, so the writes are spread whatever the number of agents."""
        if self._heard_from:
            now_us = self.now_us()
            for name in self._heard_from:
                self.last_seen_us[name] = now_us
            self._unwritten_seen |= self._heard_from
            self._heard_from = set()
        due = trio.current_time() - self._seen_written_at >= self.config.seen_write_interval_s
        if self._unwritten_seen and (due or all_due):
            self._seen_to_write.update(dict.fromkeys(self._unwritten_seen))
            self._unwritten_seen = set()
            self._seen_written_at = trio.current_time()

    def _write_true_last_seen(self, name: str) -> None:
        """The model keeps when an offline agent was last heard from: that is the figure
        an operator needs to judge what happened."""
        self._take_heard()
        self._unwritten_seen.discard(name)
        self._seen_to_write.pop(name, None)
        if name in self.last_seen_us:
            self.model.agent_seen([name], self.last_seen_us[name])

    def _write_seen(self, limit: int) -> int:
        names = list(itertools.islice(self._seen_to_write, limit))
        for name in names:
            del self._seen_to_write[name]
        if names:
            self.model.agent_seen(names, self.now_us())
        return len(names)

    def _write_stats(self, limit: int) -> int:
        batch = self._pending_stats[:limit]
        del self._pending_stats[:limit]
        if batch:
            self.model.add_stats(batch)
        return len(batch)

    # ------------------------------------------------------------ agent reports

    def time_info(self, session: AgentSession, info: TimeInfo) -> None:
        self.model.set_agent_clock(
            session.name, info.source, info.offset_us, info.delay_us, info.measured_us
        )

    def agent_labels(self, session: AgentSession, announced: AgentLabels) -> None:
        """The agent's --labels replace those it announced before. The agent checked them;
        a bad set (another client's) is refused whole, said in an event, never a crash.

        An agent with the "labels" capability sends AGENT_LABELS, if it has labels, before
        its first AGENT_STATE; that state arriving first means it has none now
        (`agent_state_heard`). So a new agent without labels sends nothing a server of
        release 1 does not know, and the server never holds a stale or half-known set.
        """
        session.labels_heard = True
        try:
            labels = parse_labels(f"{label.key}={label.value}" for label in announced.labels)
        except InvalidRequest as exc:
            logger.warning("agent %s announced bad labels: %s", session.name, exc)
            self.server_event(session.name, EventKind.ERROR, f"labels refused: {exc}")
            return
        self.model.replace_announced_labels(session.name, labels)

    def agent_state_heard(self, session: AgentSession) -> None:
        """An AGENT_STATE: if no AGENT_LABELS came before it, the agent has no labels now."""
        if not session.labels_heard and LABELS_CAPABILITY in session.hello.capabilities:
            session.labels_heard = True
            self.model.replace_announced_labels(session.name, {})

    def stats_report(self, session: AgentSession, report: StatsReport) -> None:
        node = {f.name: getattr(report.node, f.name) for f in dataclasses.fields(report.node)}
        processes = [
            {f.name: getattr(p, f.name) for f in dataclasses.fields(p)} for p in report.processes
        ]
        self._pending_stats.append(StatsRecord(session.name, report.time_us, node, processes))

    def agent_event(self, session: AgentSession, event: Event) -> Ack:
        """Store an agent's event once (replays are de-duplicated by seq); it is to be
        acknowledged either way (a replay was stored before)."""
        record = EventRecord(
            id=0, agent=session.name, seq=event.seq, time_us=event.time_us, kind=event.kind,
            process=event.process, old_state=event.old_state, new_state=event.new_state,
            exit_code=event.exit_code, signal=event.signal, message=event.message,
            schedule_id=event.schedule_id,
        )
        stored = self.model.add_event(record)
        if stored is not None:
            self._publish(stored)
            if event.kind == EventKind.PROCESS_STATE:
                self.model.note_process_state(session.name, event.process, event.new_state,
                                              event.exit_code, event.signal, self.now_us())
                self._follow_end(session.name, event)
            elif event.kind == EventKind.SCHEDULE_FIRED and event.schedule_id:
                self._follow_schedule(session.name, event)
        return Ack(event.seq)

    def _follow_end(self, agent: str, event: Event) -> None:
        """A run that ended for good (clean exit, `failed`) is desired exited: the model
        must not say RUNNING of a process nothing will run again (and a bundle whose
        processes all ended can be removed). Only an end newer than the last command on
        the process counts: a late event must not undo a start asked for since."""
        if ProcessState(event.new_state) not in (ProcessState.EXITED, ProcessState.FAILED):
            return
        if ended_on_request(event.message):  # its command set the desired state itself
            return
        spec = self.model.find_process(agent, event.process)
        if spec is not None and spec.desired != DesiredState.EXITED \
                and event.time_us > spec.updated_us:
            self.model.set_desired_state(agent, event.process, DesiredState.EXITED)

    def _follow_schedule(self, agent: str, event: Event) -> None:
        """A fired schedule changed the process: the desired state follows, or the next
        reconcile would undo it."""
        try:
            record = self.model.schedule(event.schedule_id)
        except UnknownSchedule:
            return  # cleared since it fired
        desired = desired_after_fire(record)
        if desired is not None and self.model.find_process(agent, record.process) is not None:
            self.model.set_desired_state(agent, record.process, desired)

    def server_event(self, agent: str, kind: EventKind, message: str, process: str = "") -> None:
        record = EventRecord(
            id=0, agent=agent, seq=None, time_us=self.now_us(), kind=kind, process=process,
            old_state=ProcessState.NONE, new_state=ProcessState.NONE, exit_code=-1, signal=0,
            message=message,
        )
        stored = self.model.add_event(record)
        if stored is not None:
            self._publish(stored)

    # ------------------------------------------------------------ event followers

    def _publish(self, record: EventRecord) -> None:
        for channel in list(self._event_subscribers):
            try:
                channel.send_nowait(record)
            except (trio.WouldBlock, trio.BrokenResourceError):
                logger.warning("an event follower fell behind; ending its stream")
                self._event_subscribers.discard(channel)
                channel.close()

    @asynccontextmanager
    async def subscribe_events(self) -> AsyncIterator[trio.MemoryReceiveChannel[EventRecord]]:
        send_channel, receive_channel = trio.open_memory_channel[EventRecord](
            EVENT_SUBSCRIBER_BUFFER
        )
        self._event_subscribers.add(send_channel)
        try:
            yield receive_channel
        finally:
            self._event_subscribers.discard(send_channel)
            send_channel.close()

    # ------------------------------------------------------------ targets and fan-out

    def known_agents(self) -> list[str]:
        """Enrolled (holding a live token) or ever seen."""
        names = {t.name for t in self.model.tokens() if t.role == Role.AGENT and not t.revoked_us}
        names.update(a.name for a in self.model.agents())
        return sorted(names)

    def is_known_agent(self, name: str) -> bool:
        """The same test as `name in known_agents()`, for one name."""
        if name in self.sessions or self.model.token_key(Role.AGENT, name) is not None:
            return True
        try:
            self.model.agent(name)
        except UnknownAgent:
            return False
        return True

    def resolve_targets(self, pattern: str) -> list[str]:
        """The agents a selector (lotc/selectors.py) names; UnknownAgent, naming it, if none."""
        selector = parse_selector(pattern)
        single = selector.single_name
        if single is not None:
            # One plain name (`ps web-1`, `stop web-1 p`, the common case): two indexed
            # lookups. Listing every known agent to find it cost ~5 ms per 1,000 agents,
            # on every command, holding up all connections meanwhile (bench.server_load).
            if self.is_known_agent(single):
                return [single]
            raise UnknownAgent(f"unknown agent {single!r}")
        labels = None
        if selector.uses_labels:
            labels = {name: effective_labels(r.announced, r.console)
                      for name, r in self.model.labels().items()}
        return select(selector, self.known_agents(), labels)

    def match_agents(self, pattern: str) -> list[str] | None:
        """Like resolve_targets for listings: empty pattern = all (None)."""
        return None if not pattern.strip() else self.resolve_targets(pattern)
