"""Wiring of the server: model, controller, the listeners, background duties.

`serve_server` is a structured-concurrency server: it reports its bound
addresses through task_status once it accepts connections, runs until its
cancel scope is cancelled (SIGINT/SIGTERM in `run`), and on the way out
flushes batched writes and closes the database.
"""
from __future__ import annotations

import logging
import signal
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import ClassVar

import trio

from lotc.errors import LotcError
from lotc.net.address import Address
from lotc.net.readhub import ReadHub
from lotc.net.refusals import Refusals
from lotc.net.transport import bound_address, open_listeners, serve
from lotc.server.admin_server import handle_admin
from lotc.server.agent_server import handle_agent
from lotc.server.checkpointer import run_checkpoints
from lotc.server.config import ServerConfig
from lotc.server.controller import Controller, wall_clock_us
from lotc.server.duties import run_revocation_watch, run_verdicts
from lotc.server.gc_pacing import pace_full_collections
from lotc.server.http_server import serve_http
from lotc.server.model import Model
from lotc.sntp import serve_sntp
from protocol.errors import ErrorCode

Listener = trio.abc.Listener[trio.abc.Stream]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BoundAddresses:
    agent: list[Address]
    admin: list[Address]
    http: list[Address]


async def serve_server(
    config: ServerConfig, task_status: trio.TaskStatus[BoundAddresses] = trio.TASK_STATUS_IGNORED
) -> None:
    # Listen first: a port already in use is reported before any database file is made.
    agent_listeners = await listen_on(config.listen, config.ssl_context)
    admin_listeners: list[Listener] = []
    http_listeners: list[Listener] = []
    try:
        admin_listeners = await listen_on(config.admin_listen, config.ssl_context)
        http_listeners = await listen_on(config.http_listen, None)
        model = Model(config.db_path)
    except BaseException:
        await close_all(agent_listeners + admin_listeners + http_listeners)
        raise
    ctl = Controller(model, config)
    try:
        model.mark_all_offline(wall_clock_us())
        ctl.fleet.load(model)  # /metrics reads memory from now on (fleet_view.py)
        bound = BoundAddresses(
            agent=[bound_address(x) for x in agent_listeners],
            admin=[bound_address(x) for x in admin_listeners],
            http=[bound_address(x) for x in http_listeners],
        )
        async with trio.open_nursery() as nursery:
            await nursery.start(run_verdicts, ctl)
            await nursery.start(run_revocation_watch, ctl)
            await nursery.start(run_checkpoints, model)
            # One count for both ports: a source refused on either is the same source.
            refusals = ctl.metrics.refusals = Refusals()  # /metrics counts them too
            await nursery.start(refusals.run)
            # Agents' heartbeats are read in batches by one task (lotc/net/readhub.py).
            read_hub = ReadHub() if ReadHub.available() else None
            if read_hub is not None:
                await nursery.start(read_hub.run)
            frames = ctl.metrics.frames  # frames received per type, per listener
            for handler, listeners, tally in (
                    (partial(handle_agent, ctl, read_hub=read_hub), agent_listeners,
                     frames["agent"]),
                    (partial(handle_admin, ctl), admin_listeners, frames["console"])):
                await nursery.start(partial(
                    serve, handler, listeners, refusals=refusals, tally=tally,
                    max_body=config.max_body, send_timeout=config.send_timeout_s))
            if http_listeners:
                await nursery.start(serve_http, ctl, http_listeners)
            for address in config.ntp_listen:
                port = await nursery.start(partial(serve_sntp, address.host, address.port,
                                                   local_stratum=config.ntp_local_stratum))
                logger.info("answering SNTP on %s", Address(address.host, port))
            for address in bound.agent:
                logger.info("listening for agents on %s", address)
            for address in bound.admin:
                logger.info("listening for consoles on %s", address)
            for address in bound.http:
                logger.info("serving /metrics on http://%s/metrics", address)
            task_status.started(bound)
    finally:  # plain synchronous cleanup: cancellation cannot interrupt it
        ctl.flush(all_seen=True)
        model.close()
        logger.info("server stopped; state saved in %s", config.db_path)


class ListenFailed(LotcError):
    """A listener could not be opened (the port is in use, the address is not ours...)."""

    code: ClassVar[ErrorCode] = ErrorCode.INTERNAL


async def listen_on(addresses: Sequence[Address], ssl_context: ssl.SSLContext | None,
                    ) -> list[Listener]:
    """Open a listener per address; the first that fails is named, the others closed."""
    listeners: list[Listener] = []
    for address in addresses:
        try:
            listeners += await open_listeners([address], ssl_context)
        except OSError as exc:
            await close_all(listeners)
            raise ListenFailed(f"cannot listen on {address}: {exc.strerror or exc}") from None
    return listeners


async def close_all(listeners: Sequence[Listener]) -> None:
    with trio.CancelScope(shield=True):
        for listener in listeners:
            await listener.aclose()


async def run(config: ServerConfig) -> None:
    """Serve until SIGINT or SIGTERM, then shut down cleanly."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            await nursery.start(serve_server, config)
            # Here, not in serve_server: it changes the whole process's collector.
            await nursery.start(pace_full_collections)
            async for signum in signals:
                logger.info("received %s: shutting down", signal.Signals(signum).name)
                nursery.cancel_scope.cancel()
                break
