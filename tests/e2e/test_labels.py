"""Labels and selectors, end to end (issue 17 item 1, DESIGN 7 "Selectors").

A real `lotc server`, three real `lotc agent`s with different `--label`s and the
real console (`lotc console -c`): label selectors hit exactly the matching agents,
a selector that matches nothing is an error naming it, console labels override
the agent's own until unlabel, and they survive a server restart.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from tests.cluster import Cluster, wait_until

PY = sys.executable
FLEET = {
    "web1": ("role=web", "zone=a"),
    "web2": ("role=web", "zone=b"),
    "db1": ("role=db", "zone=a"),
}


def labels_of(cluster: Cluster) -> dict[str, dict[str, Any]]:
    return {name: {"labels": a["labels"], "console": a["labels_console"]}
            for name, a in cluster.agents_view().items()}


def start_fleet(cluster: Cluster) -> None:
    cluster.start_server()
    for name, labels in FLEET.items():
        cluster.start_agent(name, extra=tuple(f"--label={label}" for label in labels))
    cluster.wait_online(*FLEET)
    cluster.console("wait role=web,zone=a")  # a label selector waits for the labels too
    want = {name: dict(label.split("=") for label in labels) for name, labels in FLEET.items()}
    wait_until(lambda: {n: v["labels"] for n, v in labels_of(cluster).items()} == want,
               what="every agent's --labels announced")


def states(cluster: Cluster) -> dict[str, str]:
    return {agent: p["state"] for (agent, name), p in cluster.processes().items() if name == "p"}


def result_lines(text: str) -> dict[str, str]:
    """'web1  ok  stopped' lines of a fan-out's reply -> {agent: outcome}."""
    return {line.split()[0]: line.split()[1] for line in text.splitlines() if line.strip()}


@pytest.fixture
def sleeper(tmp_path: Path) -> Path:
    app = tmp_path / "sleeper"
    app.mkdir()
    (app / "main.py").write_text("import time\nwhile True:\n    time.sleep(0.2)\n")
    return app


def test_label_selectors_hit_exactly_the_matching_agents(cluster: Cluster, sleeper: Path) -> None:
    start_fleet(cluster)
    table = cluster.console("agents").stdout
    assert "LABELS" in table.splitlines()[0]
    assert any(line.startswith("web2") and line.endswith("role=web zone=b")
               for line in table.splitlines()), table

    cluster.console(f"upload all app {sleeper}; start all app --name p -- {PY} main.py")
    wait_until(lambda: set(states(cluster).values()) == {"RUNNING"} and len(states(cluster)) == 3,
               what="p running on the three agents")

    out = cluster.console("stop role=web p").stdout
    assert result_lines(out) == {"web1": "ok", "web2": "ok"}, out  # each agent's outcome
    wait_until(lambda: states(cluster) == {"web1": "STOPPED", "web2": "STOPPED",
                                           "db1": "RUNNING"}, what="only the web agents stopped")

    listed = cluster.console_json("ps role=web")["processes"]
    assert sorted(p["agent"] for p in listed) == ["web1", "web2"]
    detailed = cluster.console_json("ps role=web p")["processes"]  # P in detail on each
    assert [(d["agent"], d["fields"]["state"]) for d in detailed] == \
        [("web1", "stopped"), ("web2", "stopped")], detailed
    out = cluster.console("resume role=web,zone!=b p").stdout  # AND, and !=
    assert result_lines(out) == {"web1": "ok"}, out
    wait_until(lambda: states(cluster)["web1"] == "RUNNING", what="web1 resumed")
    assert states(cluster)["web2"] == "STOPPED"
    assert sorted(a["name"] for a in cluster.console_json("agents zone=a")["agents"]) == \
        ["db1", "web1"]
    assert sorted(a["name"] for a in cluster.console_json("agents web1,db*")["agents"]) == \
        ["db1", "web1"]

    # a selector that matches nothing is an error naming it; nothing is touched
    miss = cluster.console("stop role=cache p", check=False)
    assert miss.returncode != 0 and "no agent matches 'role=cache'" in miss.stderr, miss
    mixed = cluster.console("stop web1,role=web p", check=False)
    assert mixed.returncode == 2 and "mixes agent names and label terms" in mixed.stderr, mixed
    assert states(cluster) == {"web1": "RUNNING", "web2": "STOPPED", "db1": "RUNNING"}


def test_console_labels_override_until_unlabel_and_survive_a_restart(cluster: Cluster) -> None:
    start_fleet(cluster)
    out = cluster.console("label db1 role=web tier=back").stdout
    assert "overrides the agent's own role=db" in out, out
    assert sorted(a["name"] for a in cluster.console_json("agents role=web")["agents"]) == \
        ["db1", "web1", "web2"]
    assert "role=web* tier=back* zone=a" in cluster.console("agents db1").stdout
    details = cluster.console_json("agent role=web")["agents"]  # a section per agent
    assert [d["agent"] for d in details] == ["db1", "web1", "web2"]
    assert details[0]["fields"]["labels"] == \
        "role=web tier=back zone=a (console: role=web tier=back; agent: role=db zone=a)"

    # the agent's --label cannot be removed from the console: said plainly, as a failure
    refused = cluster.console("unlabel web1 role", check=False)
    assert refused.returncode == 1 and "comes from the agent's own --label" in refused.stdout

    cluster.console("unlabel db1 role")  # the agent's own role=db is back; tier stays
    assert labels_of(cluster)["db1"] == {"labels": {"role": "db", "tier": "back", "zone": "a"},
                                         "console": {"tier": "back"}}

    # console labels are the server's: they survive its restart, and the agents'
    # reconnects (which replace only what the agents announce)
    cluster.stop_server()
    cluster.start_server()
    assert labels_of(cluster)["db1"]["console"] == {"tier": "back"}
    cluster.wait_online(*FLEET)
    assert [a["name"] for a in cluster.console_json("agents tier=back")["agents"]] == ["db1"]
    assert labels_of(cluster)["db1"]["labels"] == {"role": "db", "tier": "back", "zone": "a"}

    # an agent restarted without --label has none of its own; the console's stay
    cluster.kill_agent("db1")
    cluster.start_agent("db1")
    wait_until(lambda: labels_of(cluster)["db1"]["labels"] == {"tier": "back"},
               what="db1's own labels gone after a restart without --label")


def test_bad_labels_are_refused_before_anything_starts(cluster: Cluster) -> None:
    cluster.start_server()
    token = cluster.token("agent", "bad1")
    agent = cluster.lotc("agent", "--server", f"127.0.0.1:{cluster.agent_port}", "--token", token,
                         "--label", "role", check=False)
    assert agent.returncode != 0 and "needs a value: write KEY=VALUE" in agent.stderr, agent
    bad = cluster.console("label all role=w*b", check=False)
    assert bad.returncode == 2 and "invalid value 'w*b' for label 'role'" in bad.stderr, bad
