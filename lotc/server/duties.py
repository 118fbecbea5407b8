"""The server's timed duties, and the one place the controller's decisions are
carried out on connections.

The verdict loop flushes batched reports and closes what the controller judged
silent; the revocation watch closes what a revocation from another process (the
`lotc token revoke` CLI on the same database) cut off. The faces use `carry_out`
for the decisions of their own calls.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable

import trio

from lotc.server.controller import Controller
from lotc.server.decisions import Close

logger = logging.getLogger(__name__)


async def carry_out(closes: Iterable[Close]) -> None:
    """Close each link, after its error frame if it has one (best effort: a link that
    broke meanwhile is closed all the same)."""
    for close in closes:
        if close.error is not None:
            await close.link.send_error(close.error)
        await close.link.aclose()


async def run_verdicts(ctl: Controller,
                       task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """Flush batched heartbeats and stats; judge silent connections and absent agents."""
    task_status.started()
    while True:
        await trio.sleep(ctl.config.verdict_tick_s)
        await ctl.flush_in_steps()
        await carry_out(ctl.judge(trio.current_time()))


async def run_revocation_watch(
    ctl: Controller, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    """Notice revocations written by another process (`lotc token revoke`)."""
    ctl.revocations_seen()
    task_status.started()
    while True:
        await trio.sleep(ctl.config.revocation_poll_s)
        await carry_out(ctl.revocations())
