"""`stats` shows df's free space, asked only of agents that can tell (issue 14 item 11).

NodeStats (STATS_REPORT) is frozen since release 1 and has no "free": QUERY_DISK is a
new message, sent only to agents that announced "disk-free" in HELLO (an old agent
would take an unknown message type for a protocol error and drop its link). For an
old agent the console shows used and total from its last report and says, in plain
words, that free is unknown. A real server on 127.0.0.1/::1, a real agent, the real
console code; the old agent is the real codec and handshake announcing release 1's
capabilities, over TCP.
"""
from __future__ import annotations

import io
import itertools
import json
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import trio

from admin_console.client import AdminClient
from admin_console.commands import build_registry
from admin_console.commands.base import Context
from admin_console.registry import Outcome, parse_line, run_invocation
from lotc.net.auth import client_handshake
from lotc.net.transport import connect
from lotc.server.controller import Controller
from lotc.server.disk_usage import DISK_FREE_CAPABILITY, MAX_PATH_BYTES
from protocol.enums import Role
from protocol.errors import ErrorCode
from protocol.message_types import DEFAULT_MAX_BODY
from protocol.messages import (
    AgentState,
    DiskEntry,
    DiskUsage,
    Error,
    Heartbeat,
    NodeStats,
    QueryDisk,
    StatsReport,
    Token,
    TokenCreate,
)
from tests.server_helpers import (  # noqa: F401  (fixtures)
    DEADLINE_S,
    Answer,
    FakeAgent,
    InProcessCluster,
    connect_agent,
    connect_console,
    ctl_fixture,
    in_process_cluster,
    model_fixture,
    wall_fixture,
)

REGISTRY = build_registry()
RELEASE_1_CAPABILITIES = ("bundles", "processes", "liveness", "logs", "stats", "events")
OLD_USED, OLD_TOTAL = 3 * 2**30, 8 * 2**30  # what the old agent's report says


async def run(console: AdminClient, line: str, *, as_json: bool = False) -> str:
    invocation = parse_line(REGISTRY, line)
    assert invocation is not None
    out = io.StringIO()
    ctx = Context(console, REGISTRY, json=as_json, out=out, err=io.StringIO())
    with trio.fail_after(DEADLINE_S):
        assert await run_invocation(ctx, invocation) is Outcome.OK
    return out.getvalue()


@asynccontextmanager
async def old_agent(cluster: InProcessCluster, console: AdminClient,
                    name: str) -> AsyncIterator[FakeAgent]:
    """An agent of release 1: its capabilities, one stats report, then it answers requests."""
    [reply] = await console.request(TokenCreate(role=Role.AGENT, name=name))
    assert isinstance(reply.body, Token)
    framed = await connect(cluster.agent_address(4), max_body=DEFAULT_MAX_BODY, send_timeout=5)
    try:
        welcome = await client_handshake(framed, role=Role.AGENT, name=name,
                                         token=reply.body.token,
                                         capabilities=RELEASE_1_CAPABILITIES)
        agent = FakeAgent(name, framed)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(agent.run)
            nursery.start_soon(heartbeats, agent, welcome.heartbeat_ms / 1000)
            await agent.send(AgentState())
            await agent.send(StatsReport(agent="", time_us=time.time_ns() // 1000, node=NodeStats(
                mem_total=2**30, disk_used=OLD_USED, disk_total=OLD_TOTAL, uptime_s=60)))
            yield agent
            nursery.cancel_scope.cancel()
    finally:
        await framed.aclose()


async def heartbeats(agent: FakeAgent, interval_s: float) -> None:
    """As any agent does, so a slow run does not see it closed for silence."""
    for seq in itertools.count(1):
        await agent.send(Heartbeat(seq=seq, time_us=time.time_ns() // 1000, running=0))
        await trio.sleep(interval_s)


async def stats_of_both(console: AdminClient) -> str:
    with trio.fail_after(DEADLINE_S * 2):  # the real agent reports every second
        while True:
            text = await run(console, "stats all")
            if "no statistics" not in text and text.count("latest report") == 2:
                return text
            await trio.sleep(0.05)


async def test_an_old_agent_gets_no_query_disk_and_the_console_says_free_is_unknown(
    tmp_path: Path,
) -> None:
    async with in_process_cluster(tmp_path, agents=("new-1",)) as cluster, AdminClient.connect(
        cluster.admin_address(6), token=cluster.tokens["alice"], name="alice",
    ) as console, old_agent(cluster, console, "old-1") as old:
        text = await stats_of_both(console)
        sections = {section.split()[0]: section for section in text.split("\n\n")}
        assert "used 3.0 GiB  total 8.0 GiB  free: unknown (agent too old)" in sections["old-1"]
        assert "free: unknown" not in sections["new-1"] and " free " in sections["new-1"], text

        listing = json.loads(await run(console, "stats all", as_json=True))
        documents = {document["agent"]: document for document in listing["stats"]}
        assert documents["old-1"]["disk"] == {
            "path": None, "mount": None, "used": OLD_USED, "free": None, "total": OLD_TOTAL,
            "use_percent": None, "inodes_used": None, "inodes_free": None,
            "inodes_total": None, "unknown": "agent too old"}
        new = documents["new-1"]["disk"]
        st = os.statvfs(tmp_path)
        assert new["unknown"] is None and new["total"] == st.f_blocks * st.f_frsize
        assert new["path"] == str(tmp_path / "agent-new-1")

        assert not old.of_type(QueryDisk), "never sent to an agent that did not announce it"
        assert not old.closed.is_set(), "the old agent's link is untouched"
        # Asked directly, the server answers for it (DISK_USAGE with the reason).
        [frame] = await console.request(QueryDisk(pattern="old-*"))
        assert isinstance(frame.body, DiskUsage)
        assert [(d.agent, d.unknown) for d in frame.body.disks] == [("old-1", "agent too old")]


async def test_odd_answers_become_plain_reasons_and_long_paths_are_cut(
    ctl: Controller, nursery: trio.Nursery,
) -> None:
    long_path = "/" + "p" * 60_000
    answers: dict[str, dict[type, Answer]] = {
        "long-1": {QueryDisk: lambda frame: DiskUsage(disks=(
            DiskEntry(path=long_path, mount=long_path, used=1, avail=2, total=3),))},
        "err-1": {QueryDisk: lambda frame: Error(code=ErrorCode.INTERNAL, message="disk on fire")},
        "two-1": {QueryDisk: lambda frame: DiskUsage(disks=(DiskEntry(), DiskEntry()))},
    }
    agents = [await connect_agent(nursery, ctl, name, answers=answer,
                                  capabilities=("stats", DISK_FREE_CAPABILITY))
              for name, answer in answers.items()]
    console = await connect_console(nursery, ctl)

    await console.send(QueryDisk(pattern="all"), 7)
    with trio.fail_after(DEADLINE_S):
        frame = await console.receive()
    assert isinstance(frame.body, DiskUsage) and frame.request_id == 7
    disks = {disk.agent: disk for disk in frame.body.disks}
    assert set(disks) == {"long-1", "err-1", "two-1"}
    assert (disks["long-1"].used, disks["long-1"].avail, disks["long-1"].total) == (1, 2, 3)
    assert len(disks["long-1"].path.encode()) <= MAX_PATH_BYTES < len(long_path)
    assert "disk on fire" in disks["err-1"].unknown
    assert disks["two-1"].unknown == "the agent answered DiskUsage to QUERY_DISK"
    assert not any(agent.closed.is_set() for agent in agents), "every link stays up"
