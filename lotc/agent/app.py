"""Wiring of the agent: clock sync, supervisor, link to the server.

Stopping the agent (SIGINT/SIGTERM) leaves its processes running on purpose:
an agent upgrade or crash must not bounce every service on the node. The
next agent over the same state dir re-adopts them (see supervisor.py).
"""
from __future__ import annotations

import logging
import signal
from dataclasses import dataclass, field
from pathlib import Path

import trio

from lotc.agent.clock import ClockSample, CorrectedClock
from lotc.agent.connection import LinkConfig, run_link
from lotc.agent.core import AgentCore
from lotc.agent.scheduler import SYNC_WAIT_S
from lotc.agent.timesync import DEFAULT_INTERVAL_S, TimeSync

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class AgentConfig:
    link: LinkConfig
    state_dir: Path
    ntp_servers: tuple[str, ...] = field(default=())
    ntp_interval_s: float = DEFAULT_INTERVAL_S


async def serve_agent(
    config: AgentConfig, task_status: trio.TaskStatus[AgentCore] = trio.TASK_STATUS_IGNORED
) -> None:
    config.state_dir.mkdir(parents=True, exist_ok=True)
    clock = CorrectedClock()
    # Without NTP servers there is no first sync to wait for: schedules run on the local
    # clock at once (and their events say it is unsynced).
    core = AgentCore(config.state_dir, clock,
                     sync_wait_s=SYNC_WAIT_S if config.ntp_servers else 0.0)

    def synced(sample: ClockSample) -> None:
        core.note_clock_sync()

    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(core.supervisor.run)
            await core.prune_versions()
            sync = TimeSync(config.ntp_servers, clock, interval_s=config.ntp_interval_s,
                            on_sync=synced)
            await nursery.start(lambda task_status: sync.run(task_status=task_status))
            await nursery.start(lambda task_status: core.scheduler.run(task_status=task_status))
            await nursery.start(run_link, config.link, core)
            task_status.started(core)
    finally:
        core.close()


async def run(config: AgentConfig) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            await nursery.start(serve_agent, config)
            async for signum in signals:
                logger.info("received %s: agent stopping, processes keep running",
                            signal.Signals(signum).name)
                nursery.cancel_scope.cancel()
                break
