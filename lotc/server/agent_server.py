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
            nursery.start_soon(ping, framed, ctl.config.server_ping_interval_s)
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
    # Backstop only: the controller's verdict loop closes silent connections sooner.
    backstop = ctl.config.silence_limit_s * 2 + ctl.config.offline_grace_s
    while True:
        frame = await session.framed.receive_within(backstop)
        ctl.heard_from(session)
        body = frame.body
        if isinstance(body, REPLY_TYPES):
            if not session.deliver(frame) and isinstance(body, Error):
                logger.warning("agent %s reported: %s", session.name, body.message)
        elif isinstance(body, Heartbeat):
            pass
        elif isinstance(body, Event):
            await ctl.agent_event(session, body)
        elif isinstance(body, StatsReport):
            ctl.stats_report(session, body)
        elif isinstance(body, TimeInfo):
            ctl.time_info(session, body)
        elif isinstance(body, AgentState):
            if frame.request_id and session.deliver(frame):
                continue  # the answer to a refresh (live ps)
            # In its own task: reconciling awaits replies that this loop must keep reading.
            nursery.start_soon(reconcile, ctl, session, body)
        else:
            raise ProtocolError(
                f"agents may not send {type(body).__name__}", ErrorCode.UNEXPECTED_MESSAGE
            )
