"""`stats` asks what `df` shows: each agent's own answer, or the plain reason there is none.

NodeStats (in STATS_REPORT) is frozen since release 1 and has no "free": QUERY_DISK
asks agents live, and only those that announced "disk-free" in HELLO (an older agent
would take the unknown message type for a protocol error and drop its link). For the
others, and for agents offline or silent, the server answers an entry itself whose
`unknown` says why; the console then shows used and total from the stats report.
"""
from __future__ import annotations

from dataclasses import replace

import trio

from lotc.errors import LotcError, wire_text
from lotc.server.command_context import CommandContext
from protocol.messages import DiskEntry, DiskUsage, QueryDisk

DISK_FREE_CAPABILITY = "disk-free"  # lotc.agent.connection.CAPABILITIES
DISK_TIMEOUT_S = 2.0  # a statvfs is instant; longer means a stuck agent or mount
TOO_OLD = "agent too old"
OFFLINE = "agent offline"
# An agent's paths are cut to this, so a reply batch of them (admin_server.LIST_BATCH
# entries a frame) stays far below the frame limit whatever an agent sends.
MAX_PATH_BYTES = 1024


async def disk_usage(ctl: CommandContext, pattern: str) -> list[DiskEntry]:
    """One entry per agent `pattern` names (UnknownAgent if none), in its order."""
    agents = ctl.resolve_targets(pattern)
    found: dict[str, DiskEntry] = {}

    async def one(agent: str) -> None:
        found[agent] = await _ask(ctl, agent)

    async with trio.open_nursery() as nursery:
        for agent in agents:
            nursery.start_soon(one, agent)
    return [found[agent] for agent in agents]


async def _ask(ctl: CommandContext, agent: str) -> DiskEntry:
    session = ctl.session(agent)
    if session is None:
        return DiskEntry(agent=agent, unknown=OFFLINE)
    if DISK_FREE_CAPABILITY not in session.hello.capabilities:
        return DiskEntry(agent=agent, unknown=TOO_OLD)  # never sent a QUERY_DISK
    try:
        reply = await session.request(QueryDisk(pattern=""), DISK_TIMEOUT_S)
    except LotcError as exc:
        return DiskEntry(agent=agent, unknown=wire_text(str(exc)))
    body = reply.body
    if not isinstance(body, DiskUsage) or len(body.disks) != 1:
        return DiskEntry(agent=agent, unknown=f"the agent answered {type(body).__name__} "
                                              "to QUERY_DISK")
    disk = body.disks[0]
    return replace(disk, agent=agent, path=wire_text(disk.path, MAX_PATH_BYTES),
                   mount=wire_text(disk.mount, MAX_PATH_BYTES), unknown=wire_text(disk.unknown))
