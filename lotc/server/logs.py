"""Relaying an agent's process logs to a console (`logs AGENT P [-f]`).

The agent answers QUERY_LOGS with LOG_LINES frames flagged MORE and a final
OK; with follow it keeps streaming until the server sends CANCEL, which the
server does when the console cancels (or goes away).
"""
from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Awaitable, Callable

import trio

from lotc.errors import AgentOffline, LotcError
from lotc.names import validate_name
from lotc.server.command_context import CommandContext
from protocol.messages import LogLines, QueryLogs

logger = logging.getLogger(__name__)

CANCEL_TIMEOUT_S = 2.0

Emit = Callable[[LogLines], Awaitable[None]]


async def relay_logs(ctl: CommandContext, query: QueryLogs, emit: Emit) -> None:
    validate_name("process", query.process)
    agents = ctl.resolve_targets(query.target)
    errors: list[LotcError] = []

    async def one(agent: str) -> None:
        try:
            await _relay_one(ctl, agent, query, emit)
        except LotcError as exc:
            errors.append(exc)

    async with trio.open_nursery() as nursery:
        for agent in agents:
            nursery.start_soon(one, agent)
    if errors and len(errors) == len(agents):
        raise errors[0]


async def _relay_one(ctl: CommandContext, agent: str, query: QueryLogs, emit: Emit) -> None:
    session = ctl.session(agent)
    if session is None:
        raise AgentOffline(f"agent {agent} is offline: its logs stay on the node until it returns")
    forwarded = QueryLogs(target="", process=query.process, lines=query.lines, follow=query.follow)
    # A follow stream waits as long as the console wants; a plain read has a deadline.
    timeout = math.inf if query.follow else ctl.config.request_timeout_s
    async with session.open_request(forwarded) as pending:
        try:
            while True:
                frame = await pending.reply(timeout)
                if isinstance(frame.body, LogLines):
                    await emit(dataclasses.replace(frame.body, agent=agent))
                if not frame.more:
                    return
        finally:
            if query.follow and not session.closed:
                with trio.CancelScope(shield=True), trio.move_on_after(CANCEL_TIMEOUT_S):
                    try:
                        await session.cancel(pending.request_id)
                    except AgentOffline:
                        pass
