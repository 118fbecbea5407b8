"""What `lotc deploy` asks the server: is the agent online, and (uninstall) stop its processes.

Each question is a short admin session with the console's own client
(admin_console.client.AdminClient), run with trio.run from deploy's plain
synchronous steps.
"""
from __future__ import annotations

import logging
import ssl
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass

import trio

from admin_console.client import AdminClient
from admin_console.errors import ConsoleError
from lotc.deploy_ssh import RemoteError
from lotc.errors import LotcError
from lotc.net.address import Address
from protocol.messages import (
    AgentEntry,
    AgentList,
    ListAgents,
    ListProcesses,
    ProcessList,
    ProcTerminate,
)

logger = logging.getLogger(__name__)

POLL_INTERVAL_S = 0.2  # how often to ask whether the agent is online yet
# A process ignoring SIGTERM is killed after its grace; give the agent that long.
TERMINATE_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class AdminAccess:
    address: Address
    address_text: str
    token: str
    name: str = "admin"
    ssl_context: ssl.SSLContext | None = None


def _connect(access: AdminAccess) -> AbstractAsyncContextManager[AdminClient]:
    return AdminClient.connect(access.address, token=access.token, name=access.name,
                               ssl_context=access.ssl_context)


async def _entry(client: AdminClient, name: str) -> AgentEntry | None:
    for frame in await client.request(ListAgents(pattern=name)):
        if isinstance(frame.body, AgentList):
            for entry in frame.body.agents:
                if entry.name == name:
                    return entry
    return None


def agent_entry(access: AdminAccess, name: str) -> AgentEntry | None:
    """The server's view of agent `name` (None: never seen)."""
    async def ask() -> AgentEntry | None:
        async with _connect(access) as client:
            return await _entry(client, name)
    try:
        return trio.run(ask)
    except (LotcError, ConsoleError, OSError) as exc:
        raise RemoteError(f"cannot ask the server at {access.address_text}: {exc}") from None


def wait_online(access: AdminAccess, name: str, old_connection_us: int | None,
                timeout: float) -> AgentEntry:
    """Poll until `name` is online on a connection other than `old_connection_us`."""
    async def poll() -> AgentEntry | None:
        async with _connect(access) as client:
            with trio.move_on_after(timeout):
                while True:
                    entry = await _entry(client, name)
                    if entry and entry.online and entry.connected_us != old_connection_us:
                        return entry
                    await trio.sleep(POLL_INTERVAL_S)
        return None
    try:
        entry = trio.run(poll)
    except (LotcError, ConsoleError, OSError) as exc:
        raise RemoteError(f"cannot ask the server at {access.address_text}: {exc}") from None
    if entry is None:
        raise RemoteError(f"agent {name!r} did not come online within {timeout:g} s")
    return entry


def terminate_all(access: AdminAccess, name: str) -> int:
    """Terminate every live process of agent `name`; how many were asked to end."""
    async def run() -> int:
        async with _connect(access) as client:
            names = []
            for frame in await client.request(ListProcesses(pattern=name)):
                if isinstance(frame.body, ProcessList):
                    names += [p.name for p in frame.body.processes if p.agent == name and p.pid]
            for process in names:
                await client.request(ProcTerminate(target=name, name=process),
                                     timeout=TERMINATE_TIMEOUT_S)
            return len(names)
    try:
        return trio.run(run)
    except (LotcError, ConsoleError, OSError) as exc:
        raise RemoteError(f"cannot terminate {name!r}'s processes through the server at "
                          f"{access.address_text}: {exc}") from None
