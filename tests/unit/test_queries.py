"""`ps` asks agents which bundle version each process runs, and only those that can tell.

The server of this release serves agents of the previous one: a new message
(LIST_RUN_VERSIONS) goes only to agents that announced "run-versions" in HELLO;
an old agent would take an unknown message type for a protocol error and drop
the link (issue 14 item 6).
"""
from __future__ import annotations

import trio

from lotc.server import queries
from lotc.server.controller import Controller
from protocol.messages import ListRunVersions, RunVersion, RunVersions
from tests.server_helpers import (  # noqa: F401  (fixtures)
    connect_agent,
    ctl_fixture,
    model_fixture,
    wall_fixture,
)

SHA = bytes(range(32))


async def test_ps_asks_only_agents_that_can_tell(ctl: Controller, nursery: trio.Nursery) -> None:
    answer = {ListRunVersions: lambda frame: RunVersions(
        runs=(RunVersion(agent="", process="web", sha256=SHA),))}
    new = await connect_agent(nursery, ctl, "new-1", answers=answer,
                              capabilities=("processes", "run-versions"))
    old = await connect_agent(nursery, ctl, "old-1", capabilities=("processes",))

    await queries.processes(ctl, "")

    assert new.of_type(ListRunVersions) and not old.of_type(ListRunVersions)
    assert queries.run_versions(ctl, "") == [RunVersion(agent="new-1", process="web", sha256=SHA)]
    assert queries.run_versions(ctl, "old-*") == []
    assert not old.closed.is_set(), "the old agent's link is untouched"
