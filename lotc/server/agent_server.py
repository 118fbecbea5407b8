"""The agent-facing server: frames from agents <-> controller calls, nothing more."""
from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import cast

import trio

from lotc.net.auth import server_handshake
from lotc.net.framed import FramedStream
from lotc.net.readhub import ReadHub
from lotc.server.controller import Controller
from lotc.server.duties import carry_out
from lotc.server.reconcile import reconcile
from lotc.server.sessions import AgentSession
from protocol import contract
from protocol.codec import Frame, encode
from protocol.enums import Role
from protocol.message_types import Leg, MessageType, Phase
from protocol.messages import (
    AgentLabels,
    AgentState,
    Error,
    Event,
    EventAck,
    Heartbeat,
    StatsReport,
    TimeInfo,
)

logger = logging.getLogger(__name__)


async def handle_agent(
    ctl: Controller, framed: FramedStream, read_hub: ReadHub | None = None
) -> None:
    """One agent's connection: handshake, then its frames until it goes.

    With a `read_hub`, the hub reads a plain-TCP connection and handles what needs
    no waiting itself (`_quick`); this task wakes only for events and reconciles.
    """
    config = ctl.config
    hello = await server_handshake(
        framed, ctl.token_key, ctl.welcome,
        allowed_role=Role.AGENT, timeout=config.handshake_timeout_s,
        revoked_key=ctl.revoked_token_key, make_timing=ctl.timing_for,
    )
    session = AgentSession(hello.name, framed, hello, ctl.now_us())
    dropped = ctl.agent_connected(session)
    if dropped is not None:
        await carry_out([dropped])
    logger.info("agent %s connected from %s (%s)", hello.name, framed.peer, hello.software)
    pinger = _Pinger(ctl, session)
    hub_reads = read_hub is not None and read_hub.attach(framed, partial(_quick, ctl, pinger))
    try:
        async with trio.open_nursery() as nursery:
            await _read_loop(ctl, session, pinger, nursery, hub_reads)
            nursery.cancel_scope.cancel()
    finally:
        ctl.agent_disconnected(session)


async def ping(framed: FramedStream, interval: float) -> None:
    """Let the peer know we are alive: it closes a link silent for several intervals."""
    seq = 0
    while True:
        await trio.sleep(interval)
        seq = (seq + 1) & 0xFFFFFFFF
        await framed.send(Heartbeat(seq=seq, time_us=time.time_ns() // 1000, running=0))


class _Pinger:
    """Marks the agent heard from and pings it back, for every frame it sends.

    Pings ride on the agent's own heartbeats: at most one per
    `server_ping_interval_s`, sent when a frame arrives, instead of a timer task per
    connection (a trio sleep per ping is a cancel scope expiring and an exception).
    An agent that falls silent gets no more pings, and needs none: the verdict loop
    closes its connection within `silence_limit_s`.
    """

    __slots__ = ("ctl", "interval", "next_ping", "seq", "session")

    def __init__(self, ctl: Controller, session: AgentSession) -> None:
        self.ctl = ctl
        self.session = session
        self.interval = ctl.config.timing.ping_s
        self.next_ping = trio.current_time() + self.interval
        self.seq = 0

    def heard(self, now: float) -> bytes | None:
        """The ping to send now, if one is due."""
        self.ctl.heard_from(self.session, now)
        if now < self.next_ping:
            return None
        self.next_ping = now + self.interval
        self.seq = (self.seq + 1) & 0xFFFFFFFF
        return encode(Heartbeat(seq=self.seq, time_us=time.time_ns() // 1000, running=0))


def _quick(ctl: Controller, pinger: _Pinger, frame: Frame) -> bool:
    """The hub's work on a frame; False leaves it to the connection's task."""
    ping = pinger.heard(trio.current_time())
    if ping is not None:
        # Skipped when the owner task is sending: the agent hears from us anyway.
        pinger.session.framed.send_now(ping)
    return _handled_now(ctl, pinger.session, frame)


# What an authenticated agent may send (the CONTRACT); everything else is refused.
AGENT_SENDS = contract.allowed(Leg.AGENT_TO_SERVER, Phase.AUTHENTICATED)


def _stats(ctl: Controller, session: AgentSession, frame: Frame) -> bool:
    ctl.stats_report(session, cast(StatsReport, frame.body))  # QUICK is keyed by type
    return True


def _time(ctl: Controller, session: AgentSession, frame: Frame) -> bool:
    ctl.time_info(session, cast(TimeInfo, frame.body))
    return True


def _labels(ctl: Controller, session: AgentSession, frame: Frame) -> bool:
    ctl.agent_labels(session, cast(AgentLabels, frame.body))
    return True


def _reply(ctl: Controller, session: AgentSession, frame: Frame) -> bool:
    body = frame.body
    if not session.deliver(frame) and isinstance(body, Error):
        logger.warning("agent %s reported: %s", session.name, body.message)
    return True


def _state(ctl: Controller, session: AgentSession, frame: Frame) -> bool:
    # With a request id: the answer to a refresh (live ps). Without: a reconcile (slow).
    return bool(frame.request_id) and session.deliver(frame)


def _beat(ctl: Controller, session: AgentSession, frame: Frame) -> bool:
    return True  # heard from: the pinger has marked it


Quick = Callable[[Controller, AgentSession, Frame], bool]

# The work on a frame that needs no waiting; True when done. A type missing here, or
# whose entry answers False, goes to the connection's task (SLOW).
QUICK: dict[MessageType, Quick] = {
    MessageType.HEARTBEAT: _beat,
    MessageType.STATS_REPORT: _stats,
    MessageType.TIME_INFO: _time,
    MessageType.AGENT_LABELS: _labels,
    MessageType.AGENT_STATE: _state,
    **dict.fromkeys((MessageType.OK, MessageType.ERROR, MessageType.BUNDLE_READY,
                     MessageType.LOG_LINES, MessageType.RUN_VERSIONS, MessageType.DISK_USAGE,
                     MessageType.PROCESS_FACTS, MessageType.EXEC_RESULT,
                     MessageType.BUNDLE_VERSIONS),
                    _reply),
}


def _handled_now(ctl: Controller, session: AgentSession, frame: Frame) -> bool:
    """Check a frame against the CONTRACT, and handle it if it needs no waiting; False
    when it needs the connection's task.

    Heartbeats, stats, time reports and replies are handled here, by the hub when
    it reads the connection: its task then wakes only for events and reconciles,
    and its parked coroutines live as long as the connection. Woken for every stats
    report instead, 10,000 tasks re-parked every 10 s, and what each left behind
    lived long enough to make the GC's full collections (half a second at 10,000
    agents) frequent.
    """
    kind = frame.body.TYPE
    if kind not in AGENT_SENDS:
        raise contract.refusal(Leg.AGENT_TO_SERVER, Phase.AUTHENTICATED, kind)
    quick = QUICK.get(kind)
    return quick is not None and quick(ctl, session, frame)


async def _read_loop(ctl: Controller, session: AgentSession, pinger: _Pinger,
                     nursery: trio.Nursery, hub_reads: bool) -> None:
    """Frames from one agent, until it goes or breaks a rule."""
    if hub_reads:
        # The hub has done the rest, and marked the agent heard from. No deadline
        # here: the controller's verdict loop closes a silent connection, which
        # ends this wait (ClosedResourceError).
        while True:
            frame = await session.framed.receive()
            if not _handled_now(ctl, session, frame):
                await _dispatch(ctl, session, frame, nursery)
            del frame  # not kept while parked: see _handled_now on the GC
    else:
        await _read_loop_alone(ctl, session, pinger, nursery)


async def _read_loop_alone(ctl: Controller, session: AgentSession, pinger: _Pinger,
                           nursery: trio.Nursery) -> None:
    """The loop for a connection no hub reads (TLS; not Linux).

    It runs 10,000 times a second with 10,000 agents, so it does per frame only
    what it must (bench.server_load; docs/performance.md, "Server"). The backstop
    deadline is one cancel scope for the whole connection, pushed forward when half
    of it is used up, not a fail_after per frame.
    """
    config = ctl.config
    framed = session.framed
    # Backstop only: the controller's verdict loop closes silent connections sooner.
    backstop = config.timing.backstop_s
    with trio.move_on_after(backstop) as silence:
        while True:
            frame = await framed.receive()
            now = trio.current_time()
            if silence.deadline - now < backstop / 2:
                silence.deadline = now + backstop
            ping = pinger.heard(now)
            if ping is not None:
                await framed.send_bytes(ping)
            if not _handled_now(ctl, session, frame):
                await _dispatch(ctl, session, frame, nursery)
            del frame  # not kept while waiting: see _handled_now on the GC
    raise trio.TooSlowError(f"agent {session.name} silent for {backstop:g} s")


async def _event(ctl: Controller, session: AgentSession, frame: Frame,
                 nursery: trio.Nursery) -> None:
    ack = ctl.agent_event(session, cast(Event, frame.body))  # SLOW is keyed by type
    await session.send(EventAck(seq=ack.seq))


async def _reconcile(ctl: Controller, session: AgentSession, frame: Frame,
                     nursery: trio.Nursery) -> None:
    ctl.agent_state_heard(session)  # before any selector can see the agent's new state
    # In its own task: reconciling awaits replies that this loop must keep reading.
    nursery.start_soon(reconcile, ctl, session, cast(AgentState, frame.body))


Slow = Callable[[Controller, AgentSession, Frame, trio.Nursery], Awaitable[None]]

# Frames that need awaiting (after QUICK declined them).
SLOW: dict[MessageType, Slow] = {
    MessageType.EVENT: _event,
    MessageType.AGENT_STATE: _reconcile,
}


async def _dispatch(
    ctl: Controller, session: AgentSession, frame: Frame, nursery: trio.Nursery
) -> None:
    await SLOW[frame.body.TYPE](ctl, session, frame, nursery)
