"""Issue 14 item 14: a bundle every agent refused is not pending for ever.

Both agents' state dirs are small tmpfs mounts, so both refuse a bundle
bigger than their free space (StorageFull). The bundle used to stay in the
desired state, its blob kept, and be pushed (and refused) again on every
reconnect. Now each refusal is an ERROR event with the agent's reason, the
bundle leaves that agent's desired state, and a blob no agent wants is
deleted; a reconnect pushes nothing.
"""
from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

from protocol.enums import EventKind
from tests import fault_db
from tests.cluster import Cluster

AGENTS = ("n1", "n2")


def refusals(cluster: Cluster, agent: str) -> list[str]:
    return [e["message"] for e in fault_db.events(cluster.db, agent, EventKind.ERROR)
            if "bundle big" in e["message"]]


def test_a_bundle_every_agent_refused_is_marked_failed_and_dropped(
        cluster: Cluster, tmpfs: Callable[..., Path]) -> None:
    cluster.start_server()
    for agent in AGENTS:
        cluster.start_agent(agent, extra=("--state-dir", str(tmpfs(f"small-{agent}", "2m"))))
    fault_db.wait_online(cluster.db, *AGENTS)
    big = cluster.root / "big.bin"
    big.write_bytes(os.urandom(3 * 1024 * 1024))
    blob = cluster.root / "lotc-blobs" / hashlib.sha256(big.read_bytes()).hexdigest()

    result = cluster.console(f"upload all big {big}", check=False)
    assert result.returncode != 0
    lines = {line.split()[0]: line for line in result.stdout.splitlines() if line.split()}
    for agent in AGENTS:
        assert "free" in lines[agent] and "not kept" in lines[agent], result.stdout
        (event,) = refusals(cluster, agent)  # marked failed, with the agent's reason
        assert "failed on" in event and "free" in event, event
    assert cluster.console_json("bundles")["bundles"] == []
    assert not blob.exists()  # nobody wants it: its bytes are gone

    for agent in AGENTS:  # a reconnect pushes nothing, so nothing is refused again
        cluster.kill_agent(agent)
        cluster.start_agent(agent, extra=("--state-dir",
                                          str(cluster.root / f"small-{agent}")))
    fault_db.wait_online(cluster.db, *AGENTS)
    # A console round trip to each agent after its reconcile began: ps asks them.
    cluster.console("ps all")
    for agent in AGENTS:
        assert len(refusals(cluster, agent)) == 1, refusals(cluster, agent)
        assert "needs" not in cluster.agent_log(agent).split("connected to", 2)[-1]
