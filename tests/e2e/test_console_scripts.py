"""Issue 14 item 5: `lotc console --json -c "ps; agents"` is JSON Lines, for scripts.

A real server and agent (tests/cluster.py), the real `lotc console` subprocess.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from tests.cluster import Cluster, wait_until


def json_lines(text: str) -> list[Any]:
    """Every line one JSON document; blank lines are not allowed either."""
    return [json.loads(line) for line in text.splitlines()]


def test_one_json_document_per_command_per_line(cluster: Cluster, app_bundle: Path) -> None:
    cluster.start_server()
    cluster.start_agent("n1")
    cluster.wait_online("n1")
    cluster.console(f"upload n1 app {app_bundle}; start n1 app -- {sys.executable} main.py")
    wait_until(lambda: cluster.processes().get(("n1", "app"), {}).get("state") == "RUNNING",
               what="app running")

    documents = json_lines(cluster.console("ps; agents", json_output=True).stdout)
    assert [sorted(d) for d in documents] == [["processes"], ["agents"]]
    process = documents[0]["processes"][0]
    assert process["exit_code"] is None  # not the wire's -1 for "none"
    assert process["exit_signal"] is None and isinstance(process["pid"], int)

    # --json after a command inside -c: that command alone is JSON
    out = cluster.console("ps --json; agents --json; bundles").stdout.splitlines()
    assert [sorted(d) for d in json_lines("\n".join(out[:2]))] == [["processes"], ["agents"]]
    assert out[2].startswith("AGENT")  # bundles: a table, as asked

    # a program's own --json after '--' is left to the program
    cluster.console(f"start n1 app --name echo --restart never -- {sys.executable} -c "
                    "'import sys; print(sys.argv)' --json")
    wait_until(lambda: "--json" in cluster.console("logs n1 echo").stdout,
               what="the program got --json")


def test_wait_for_an_agent(cluster: Cluster) -> None:
    cluster.start_server()
    token = cluster.token("agent", "n1")  # enrolled, not yet connected
    late = cluster.console("wait n1 --timeout 0.5s", check=False)
    assert late.returncode == 1 and "not online after 0.5 s: n1" in late.stderr
    cluster.start_agent("n1", token=token)
    assert "n1     online" in cluster.console("wait n1 --timeout 30s").stdout
    unknown = cluster.console("wait ghost", check=False)
    assert unknown.returncode == 1 and "unknown agent 'ghost'" in unknown.stderr
