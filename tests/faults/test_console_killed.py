"""Issue 14 item 13: a console SIGKILLed while the server relays its upload.

The server pushes the bundle to the agents chunk by chunk while the console
waits for the results. Killing the console cancels that push. It used to be
cancelled in the middle of a chunk frame: half a frame stayed on the
server->agent link, the agent read the next frames as the rest of that body,
the next upload hung and failed with "agent disconnected", and the agents
reconnected after their silence limit. Now a frame once begun is finished, the
agent is told to drop the partial bundle, and the link stays whole.
"""
from __future__ import annotations

import os
import random
import signal
import time
from pathlib import Path

from tests import fault_db
from tests.cluster import Cluster, wait_until
from tests.faults.test_agent_killed import background_console

KILLS = 20
BIG = 12 * 1024 * 1024
AGENTS = {"n1": "127.0.0.1", "n2": "::1"}
NEXT_UPLOAD_LIMIT_S = 30.0  # a console process start included, on a loaded 2-core machine


def connections(cluster: Cluster) -> dict[str, int]:
    """When each agent's current link was opened (a reconnect changes it)."""
    return {name: fault_db.agent_row(cluster.db, name)["connected_us"] for name in AGENTS}


def incoming(cluster: Cluster, agent: str) -> Path:
    return cluster.root / f"state-{agent}" / "bundles" / "incoming" / "big"


def test_console_killed_mid_relay_leaves_agent_links_whole(cluster: Cluster) -> None:
    cluster.start_server()
    for name, host in AGENTS.items():
        cluster.start_agent(name, host)
    fault_db.wait_online(cluster.db, *AGENTS)
    linked = connections(cluster)
    rng = random.Random(14_13)
    big = cluster.root / "big.bin"
    small = cluster.root / "small.txt"
    for kill in range(KILLS):
        big.write_bytes(os.urandom(BIG))  # new content: the server relays it again
        console = background_console(cluster, f"upload all big {big}")
        try:
            point = rng.randrange(1, BIG * 9 // 10)  # a random point of the relay
            data = incoming(cluster, "n1") / "data"
            wait_until(lambda d=data, p=point: d.exists() and d.stat().st_size >= p,
                       timeout=60, interval=0.002, what=f"relay past byte {point}")
        finally:
            console.send_signal(signal.SIGKILL)
            console.communicate(timeout=30)

        small.write_text(f"upload {kill}\n")
        began = time.monotonic()
        out = cluster.console(f"upload all small {small}").stdout
        took = time.monotonic() - began
        assert out.count("loaded small") == len(AGENTS), (kill, out)
        assert took < NEXT_UPLOAD_LIMIT_S, (kill, took)
        for agent in AGENTS:  # the agent dropped the partial bundle
            wait_until(lambda a=agent: not incoming(cluster, a).exists(), timeout=10,
                       what=f"{agent} dropped the partial bundle (kill {kill})")
        assert connections(cluster) == linked, f"an agent reconnected after kill {kill}"
    assert cluster.console(f"upload all big {big}").stdout.count("loaded big") == len(AGENTS)
    assert connections(cluster) == linked
