"""The agent's link to the server: connect, authenticate, report, obey, reconnect.

Theory of operation
-------------------
`run_link` loops for the agent's whole life: connect (TCP or TLS), answer the
challenge, then run one session until the connection breaks, then wait a
jittered exponential backoff and start again. Processes keep running
throughout: the link only reports and relays.

A session first sends what the server needs to reconcile (TIME_INFO,
AGENT_STATE), replays unacknowledged events from the outbox, then runs side
by side: heartbeats every interval the server asked for, stats reports,
events as they happen, and the read loop that turns server requests into
calls on the AgentCore (requests.py) and answers each with OK or ERROR.
"""
from __future__ import annotations

import logging
import random
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

import psutil
import trio

from lotc import timing
from lotc.agent.core import AgentCore
from lotc.agent.requests import RequestHandler
from lotc.errors import LotcError, TokenRevoked, error_for_code
from lotc.net.address import Address
from lotc.net.auth import client_handshake
from lotc.net.endings import CONNECTION_ENDED, principal
from lotc.net.framed import FramedStream
from lotc.net.transport import connect
from protocol import contract
from protocol.codec import Frame
from protocol.enums import Role
from protocol.errors import ErrorCode, ProtocolError
from protocol.message_types import DEFAULT_MAX_BODY, Leg, MessageType, Phase
from protocol.messages import AgentLabels, Error, EventAck, Heartbeat, Label, Timing, Welcome

logger = logging.getLogger(__name__)

# "run-versions": answers LIST_RUN_VERSIONS (which bundle version each process runs).
# "start-options": takes PROC_START_OPTIONS (lotc.options.OPTIONS: log-size, log-keep).
# "disk-free": answers QUERY_DISK (df's figures for the state dir: lotc.agent.disk).
# "process-identity": applies the options --user, --nofile, --env-file (agent/identity.py).
# "cgroup-limits": takes --memory, --cpus, --max-pids (agent/cgroup.py); whether this node
# can enforce each is announced beside, with the layout: "cgroup:hybrid", "limit:memory"...
# "health-checks": runs --check (agent/health.py). "process-facts": answers
# LIST_PROCESS_FACTS (health, ready, oom-kills per process: core.process_facts).
# "bundle-versions": keeps replaced versions, answers LIST_BUNDLE_VERSIONS and BUNDLE_SWITCH.
# "exec": runs EXEC_COMMAND, contained like a process (agent/exec_run.py).
# "timing": reads TIMING after WELCOME, and derives its silence limit from it (lotc/timing.py).
# "labels": sends AGENT_LABELS before its AGENT_STATE when it has --labels; an AGENT_STATE
#   without one before it means "no labels" (lotc/server/controller.py, agent_labels).
CAPABILITIES = ("bundles", "processes", "liveness", "logs", "stats", "events", "run-versions",
                "start-options", "disk-free", "process-identity", "cgroup-limits",
                "health-checks", "process-facts", "exec", "bundle-versions", "labels",
                timing.CAPABILITY)


@dataclass(frozen=True)
class LinkConfig:
    server: Address
    name: str
    token: str
    ssl_context: ssl.SSLContext | None = field(default=None, compare=False)
    stats_interval_s: float = 10.0
    labels: tuple[tuple[str, str], ...] = ()  # --label KEY=VALUE, checked by lotc.selectors
    connect_timeout_s: float = 10.0
    handshake_timeout_s: float = 10.0
    send_timeout_s: float = 10.0
    backoff_base_s: float = 0.5
    backoff_cap_s: float = 30.0
    revoked_retry_s: float = 600.0  # after TOKEN_REVOKED (see _wait_after_revocation)
    max_body: int = DEFAULT_MAX_BODY


class Backoff:
    """Exponential with full jitter, so a thousand agents do not return in lockstep."""

    def __init__(self, base: float, cap: float) -> None:
        self.base, self.cap, self.attempt = base, cap, 0

    def next_delay(self) -> float:
        delay = min(self.cap, self.base * 2**self.attempt)
        self.attempt += 1
        return random.uniform(delay / 2, delay)

    def reset(self) -> None:
        self.attempt = 0


def local_addresses() -> list[str]:
    found = []
    for addrs in psutil.net_if_addrs().values():
        for addr in addrs:
            if addr.family in (socket.AF_INET, socket.AF_INET6):
                found.append(addr.address)
    return found[:16]


async def run_link(
    config: LinkConfig, core: AgentCore, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    backoff = Backoff(config.backoff_base_s, config.backoff_cap_s)
    task_status.started()
    while True:
        try:
            framed = await connect(
                config.server, ssl_context=config.ssl_context, max_body=config.max_body,
                send_timeout=config.send_timeout_s, timeout=config.connect_timeout_s,
            )
        except (OSError, trio.TooSlowError, trio.BrokenResourceError) as exc:
            logger.warning("cannot reach server %s: %s", config.server, exc or type(exc).__name__)
        else:
            try:
                welcome = await client_handshake(
                    framed, role=Role.AGENT, name=config.name, token=config.token,
                    hostname=socket.gethostname(), addresses=local_addresses(),
                    capabilities=CAPABILITIES + core.cgroups.capabilities(),
                    timeout=config.handshake_timeout_s,
                )
                backoff.reset()
                logger.info("connected to %s as %s", config.server, config.name)
                await run_session(config, core, framed, welcome)
            except Exception as exc:  # noqa: BLE001  whatever ended the session, carry on
                ending = principal(exc)
                _log_ending(config, ending)
                if isinstance(ending, TokenRevoked):
                    await _wait_after_revocation(config)
                    continue
                if isinstance(ending, ProtocolError) and \
                        ending.code == ErrorCode.UNKNOWN_MESSAGE_TYPE:
                    # An older server stays older until upgraded: retry at the slowest pace,
                    # not every half second (the handshake succeeded, so backoff was reset).
                    await trio.sleep(config.backoff_cap_s)
                    continue
            finally:
                await framed.aclose()
        delay = backoff.next_delay()
        logger.info("reconnecting in %.1f s", delay)
        await trio.sleep(delay)


async def _wait_after_revocation(config: LinkConfig) -> None:
    """A revoked token stays revoked: retry rarely, not every few seconds.

    The agent keeps running (its processes and schedules go on); it tries again
    in case the token it was given is fixed by a restart with a new one.
    """
    delay = random.uniform(config.revoked_retry_s / 2, config.revoked_retry_s)
    logger.error("the server revoked this agent's token: give it a new one "
                 "(lotc token create --agent %s) and restart it; next attempt in %.0f s",
                 config.name, delay)
    await trio.sleep(delay)


def _log_ending(config: LinkConfig, exc: BaseException) -> None:
    if isinstance(exc, CONNECTION_ENDED):
        # str(): an exception object is always true, so `exc or name` printed "" (found by
        # tests/faults/test_link_faults.py)
        logger.warning("lost the server %s: %s", config.server, str(exc) or type(exc).__name__)
    elif isinstance(exc, LotcError):
        logger.error("server %s refused us: %s", config.server, exc)
    else:
        logger.error("link to %s failed", config.server, exc_info=exc)


async def run_session(
    config: LinkConfig, core: AgentCore, framed: FramedStream, welcome: Welcome
) -> None:
    core.outbox.ack(welcome.last_event_seq)
    await framed.send(core.time_info())
    if config.labels:  # none: our AGENT_STATE says so, and a server of release 1 is spared
        # a message it does not know (it would cut us off)
        await framed.send(AgentLabels(labels=tuple(Label(key=k, value=v)
                                                   for k, v in config.labels)))
    # Events BEFORE the state (fix): the server plans its reconcile from the state as soon as
    # it arrives, and a schedule that fired while it was away moves the desired state only
    # through its SCHEDULE_FIRED event. Sent after the state, the reconcile undid the fire
    # (a scheduled stop was resumed). The server handles each event before reading on.
    sent = 0
    for event in core.outbox.pending():
        await framed.send(event)
        sent = event.seq
    await framed.send(await core.agent_state())
    handler = RequestHandler(core, framed)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_heartbeats, framed, core, welcome.heartbeat_ms / 1000)
        nursery.start_soon(_stats, framed, core, config.stats_interval_s)
        nursery.start_soon(_events, framed, core, sent)
        nursery.start_soon(_time_info, framed, core)
        try:
            await _read_loop(framed, core, handler, nursery, welcome.heartbeat_ms / 1000)
        except ProtocolError as exc:
            await framed.send_error(exc)
            raise
        finally:
            nursery.cancel_scope.cancel()


@dataclass
class _Link:
    """What the read loop knows of the link: the core, and how long the server may be silent."""

    core: AgentCore
    silence_limit_s: float


async def _read_loop(
    framed: FramedStream, core: AgentCore, handler: RequestHandler, nursery: trio.Nursery,
    heartbeat_s: float,
) -> None:
    # Until the server's TIMING says otherwise (an older server sends none): the old rule.
    link = _Link(core, timing.legacy_agent_server_silence_s(heartbeat_s))
    while True:
        try:
            frame = await framed.receive_within(link.silence_limit_s)
        except trio.TooSlowError:  # say why in the log, not just "TooSlowError"
            raise trio.TooSlowError(
                f"nothing heard from the server for {link.silence_limit_s:g} s") from None
        kind = frame.body.TYPE
        # The CONTRACT refuses what the server may not send an agent (a ProtocolError:
        # run_session answers it with ERROR and the link closes).
        contract.check(Leg.SERVER_TO_AGENT, Phase.AUTHENTICATED, kind)
        on_link = LINK.get(kind)
        if on_link is not None:
            on_link(link, frame)
        else:
            await handler.dispatch(frame, nursery)


def _beat(link: _Link, frame: Frame) -> None:
    """The server's ping: hearing it was the point (the silence limit)."""


def _acked(link: _Link, frame: Frame) -> None:
    link.core.outbox.ack(cast(EventAck, frame.body).seq)


def _timing(link: _Link, frame: Frame) -> None:
    """The server's numbers: from now on, its silence limit is derived from them."""
    try:
        numbers = timing.LinkTiming.from_message(cast(Timing, frame.body))
    except ValueError as exc:
        logger.warning("ignoring the server's TIMING (%s): the server may be silent for "
                       "%g s", exc, link.silence_limit_s)
        return
    link.silence_limit_s = numbers.server_silence_limit_s
    logger.info("server pings every %g s, %d missed mean gone: silence limit %g s",
                numbers.ping_s, numbers.missed, link.silence_limit_s)


def _server_error(link: _Link, frame: Frame) -> None:
    error = cast(Error, frame.body)
    if error.code == ErrorCode.TOKEN_REVOKED:
        # The server's last word before it cuts us off: raised, so that run_link
        # waits long before retrying (a revoked token stays revoked).
        raise error_for_code(error.code, error.message)
    if error.code == ErrorCode.UNKNOWN_MESSAGE_TYPE:
        # Its last word too: a server older than us (AGENT_LABELS to a server of
        # release 1). Said in plain words, not as a broken pipe.
        raise ProtocolError(
            f"the server is older than this agent and cut us off ({error.message}): "
            f"upgrade the server, or run this agent without --label",
            ErrorCode.UNKNOWN_MESSAGE_TYPE)
    logger.error("server says: %s", error.message)


# Frames about the link itself, handled by the read loop; the rest are requests
# (RequestHandler.dispatch).
LINK: dict[MessageType, Callable[[_Link, Frame], None]] = {
    MessageType.HEARTBEAT: _beat,
    MessageType.EVENT_ACK: _acked,
    MessageType.TIMING: _timing,
    MessageType.ERROR: _server_error,
}


async def _heartbeats(framed: FramedStream, core: AgentCore, interval: float) -> None:
    seq = 0
    while True:
        seq = (seq + 1) & 0xFFFFFFFF
        await framed.send(Heartbeat(seq=seq, time_us=core.clock.now_us(),
                                    running=core.running_count()))
        await trio.sleep(interval)


async def _stats(framed: FramedStream, core: AgentCore, interval: float) -> None:
    while True:
        await framed.send(await core.stats_report())
        await trio.sleep(interval)


async def _time_info(framed: FramedStream, core: AgentCore) -> None:
    """Tell the server each new clock measurement (shown by `agents`)."""
    while True:
        await core.clock_synced.wait()
        await framed.send(core.time_info())


async def _events(framed: FramedStream, core: AgentCore, sent: int = 0) -> None:
    """Send every unacknowledged event after seq `sent`, then each new one as it is added."""
    while True:
        changed = core.outbox.changed
        for event in core.outbox.pending():
            if event.seq > sent:
                await framed.send(event)
                sent = event.seq
        await changed.wait()
