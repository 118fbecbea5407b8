"""`bundles SELECTOR --versions` and `rollback SELECTOR BUNDLE [SHA]` (issue 17 item 4).

Versions live on the agents (lotc/agent/bundle_versions.py): listing asks each
online agent that keeps them. A rollback rolls (rolling.py): on each agent in turn
the kept version becomes current (BUNDLE_SWITCH), the desired state records it, so
a reconnect does not put the newer one back, and each process that runs the bundle
is restarted on it; the next batch waits until they are ready.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import trio

from lotc.errors import AgentOffline, InvalidRequest, LotcError, UnknownBundle
from lotc.names import validate_name, validate_sha_prefix
from lotc.server.command_context import CommandContext
from lotc.server.rolling import restart_now, roll
from protocol.messages import (
    AgentResult,
    BundleSwitch,
    BundleVersion,
    BundleVersions,
    ListBundleVersions,
    Rollback,
)

__all__ = ["VERSIONS_CAPABILITY", "bundle_versions", "rollback"]

VERSIONS_CAPABILITY = "bundle-versions"  # lotc.agent.connection.CAPABILITIES
ASK_TIMEOUT_S = 5.0


async def bundle_versions(ctl: CommandContext, msg: ListBundleVersions) -> list[BundleVersion]:
    """The kept versions on each online agent `msg.target` names that keeps them."""
    if msg.name:
        validate_name("bundle", msg.name)
    agents = ctl.resolve_targets(msg.target)
    found: dict[str, list[BundleVersion]] = {}

    async def one(agent: str) -> None:
        session = ctl.session(agent)
        if session is None or VERSIONS_CAPABILITY not in session.hello.capabilities:
            return
        try:
            reply = await session.request(ListBundleVersions(target="", name=msg.name),
                                          ASK_TIMEOUT_S)
        except LotcError:
            return
        if isinstance(reply.body, BundleVersions):
            found[agent] = [replace(v, agent=agent) for v in reply.body.versions]

    async with trio.open_nursery() as nursery:
        for agent in agents:
            nursery.start_soon(one, agent)
    return [version for agent in agents for version in found.get(agent, [])]


async def rollback(ctl: CommandContext, msg: Rollback) -> list[AgentResult]:
    validate_name("bundle", msg.name)
    validate_sha_prefix(msg.sha256)
    agents = [a for a in ctl.resolve_targets(msg.target)
              if any(b.name == msg.name for b in ctl.store.desired_bundles(a))]
    if not agents:
        raise UnknownBundle(f"bundle {msg.name!r} is not on the agents {msg.target!r} names")

    async def back(agent: str) -> tuple[str, Sequence[str]]:
        session = ctl.session(agent)
        if session is None:
            raise AgentOffline(f"agent {agent} is offline: not rolled back")
        if VERSIONS_CAPABILITY not in session.hello.capabilities:
            raise InvalidRequest(f"agent {agent} keeps no versions: its LOTC is too old")
        reply = await session.request(BundleSwitch(name=msg.name, sha256=msg.sha256),
                                      ctl.config.request_timeout_s)
        if not isinstance(reply.body, BundleVersions) or len(reply.body.versions) != 1:
            raise InvalidRequest(f"the agent answered {type(reply.body).__name__} to a switch")
        now = reply.body.versions[0]
        ctl.store.set_desired_bundle(agent, msg.name, now.sha256, now.kind, now.size,
                                     ctl.now_us())
        users = [p.name for p in ctl.store.processes({agent})
                 if p.bundle == msg.name and p.desired.name == "RUNNING"]
        for name in users:
            await restart_now(ctl, agent, name)
        restarted = f", restarted {', '.join(users)}" if users else ", nothing runs it"
        return f"now at {now.sha256.hex()[:12]}{restarted}", users

    return await roll(ctl, agents, msg.max_unavailable, msg.healthy_deadline_ms, back)
