"""The agent-facing server: frames from agents <-> controller calls, nothing more."""
from __future__ import annotations

import logging
import time

import trio

from lotc.net.auth import server_handshake
from lotc.net.framed import FramedStream
from lotc.server.controller import Controller
from lotc.server.reconcile import reconcile
from lotc.server.sessions import AgentSession
from protocol.codec import Frame
from protocol.enums import Role
from protocol.errors import ErrorCode, ProtocolError
from protocol.messages import (
    AgentState,
    BundleReady,
    Error,
    Event,
    Heartbeat,
    LogLines,
    Ok,
    Results,
    StatsReport,
    TimeInfo,
)

logger = logging.getLogger(__name__)

REPLY_TYPES = (Ok, Error, BundleReady, LogLines, Results)


async def handle_agent(ctl: Controller, framed: FramedStream) -> None:
    config = ctl.config
    hello = await server_handshake(
        framed, ctl.token_key, ctl.welcome,
        allowed_role=Role.AGENT, timeout=config.handshake_timeout_s,
    )
    session = AgentSession(hello.name, framed, hello, ctl.now_us())
    await ctl.agent_connected(session)
    logger.info("agent %s connected from %s (%s)", hello.name, framed.peer, hello.software)
    try:
        async with trio.open_nursery() as nursery:
            await _read_loop(ctl, session, nursery)
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


async def _read_loop(ctl: Controller, session: AgentSession, nursery: trio.Nursery) -> None:
    """Frames from one agent, until it goes or breaks a rule.

    This loop runs 10,000 times a second with 10,000 agents, so it does per frame
    only what it must (bench.server_load; docs/performance.md, "Server"):
    - Pings ride on the agent's own heartbeats: at most one per
      `server_ping_interval_s`, sent from here after a frame arrives, instead of a
      timer task per connection (a trio sleep per ping is a cancel scope expiring
      and an exception). An agent that falls silent gets no more pings, and needs
      none: the verdict loop closes its connection within `silence_limit_s`.
    - The backstop deadline is one cancel scope for the whole connection, pushed
      forward when half of it is used up, not a fail_after per frame.
    """
    config = ctl.config
    framed = session.framed
    # Backstop only: the controller's verdict loop closes silent connections sooner.
    backstop = config.silence_limit_s * 2 + config.offline_grace_s
    ping_interval = config.server_ping_interval_s
    next_ping = trio.current_time() + ping_interval
    ping_seq = 0
    with trio.move_on_after(backstop) as silence:
        while True:
            frame = await framed.receive()
            now = trio.current_time()
            if silence.deadline - now < backstop / 2:
                silence.deadline = now + backstop
            ctl.heard_from(session, now)
            if now >= next_ping:
                next_ping = now + ping_interval
                ping_seq = (ping_seq + 1) & 0xFFFFFFFF
                await framed.send(Heartbeat(seq=ping_seq, time_us=time.time_ns() // 1000,
                                            running=0))
            if frame.body.__class__ is not Heartbeat:  # nothing more to do for those
                await _dispatch(ctl, session, frame, nursery)
    raise trio.TooSlowError(f"agent {session.name} silent for {backstop:g} s")


async def _dispatch(
    ctl: Controller, session: AgentSession, frame: Frame, nursery: trio.Nursery
) -> None:
    body = frame.body
    if isinstance(body, REPLY_TYPES):
        if not session.deliver(frame) and isinstance(body, Error):
            logger.warning("agent %s reported: %s", session.name, body.message)
    elif isinstance(body, Event):
        await ctl.agent_event(session, body)
    elif isinstance(body, StatsReport):
        ctl.stats_report(session, body)
    elif isinstance(body, TimeInfo):
        ctl.time_info(session, body)
    elif isinstance(body, AgentState):
        if frame.request_id and session.deliver(frame):
            return  # the answer to a refresh (live ps)
        # In its own task: reconciling awaits replies that this loop must keep reading.
        nursery.start_soon(reconcile, ctl, session, body)
    else:
        raise ProtocolError(
            f"agents may not send {type(body).__name__}", ErrorCode.UNEXPECTED_MESSAGE
        )
