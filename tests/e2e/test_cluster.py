"""The real thing: `lotc server`, two `lotc agent`s (IPv4 and IPv6) and `lotc console -c`."""
from __future__ import annotations

import re
import sys
from pathlib import Path

import psutil

from tests.agent_helpers import suspended
from tests.cluster import Cluster, wait_until

PY = sys.executable


def start_pair(cluster: Cluster) -> None:
    cluster.start_server()
    cluster.start_agent("node4", "127.0.0.1")
    cluster.start_agent("node6", "::1")
    cluster.wait_online("node4", "node6")


def test_agents_over_ipv4_and_ipv6(cluster: Cluster) -> None:
    start_pair(cluster)
    view = cluster.agents_view()
    assert view["node4"]["address"].startswith("127.0.0.1:")
    assert view["node6"]["address"].startswith("[::1]:")
    table = cluster.console("agents").stdout
    assert "node4" in table and "node6" in table and "online" in table


def test_process_lifecycle_reaches_the_whole_tree(cluster: Cluster, app_bundle: Path) -> None:
    start_pair(cluster)
    out = cluster.console(f"upload all app {app_bundle}; start all app --name web -- {PY} main.py")
    assert out.stdout.count(" ok ") >= 4, out.stdout
    procs = wait_until(lambda: all(p["pid"] for p in cluster.processes().values())
                       and cluster.processes(), what="pids reported")
    pid = procs[("node4", "web")]["pid"]
    tree = wait_until(lambda: len(psutil.Process(pid).children()) == 1 and
                      [psutil.Process(pid), *psutil.Process(pid).children()])
    assert wait_until(lambda: "tick 3" in cluster.console("logs node4 web -n 50").stdout)
    stamped = [line for line in cluster.console("logs node4 web -n 50").stdout.splitlines()
               if "tick 3" in line]
    assert re.fullmatch(r"node4/web \| \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z tick 3",
                        stamped[0]), stamped
    bare = cluster.console("logs node4 web -n 50 --no-timestamps").stdout.splitlines()
    assert "node4/web | tick 3" in bare, bare

    cluster.console("stop node4 web")
    wait_until(lambda: all(suspended(p.pid) for p in tree), what="tree stopped")
    assert cluster.processes()[("node4", "web")]["state"] == "STOPPED"
    assert cluster.processes()[("node4", "web")]["desired"] == "STOPPED"
    cluster.console("resume node4 web")
    wait_until(lambda: not any(suspended(p.pid) for p in tree), what="resumed")

    cluster.console("terminate node4 web")
    wait_until(lambda: not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE
                               for p in tree), what="tree gone")
    entry = cluster.processes()[("node4", "web")]
    assert (entry["state"], entry["desired"]) == ("EXITED", "EXITED")
    assert cluster.processes()[("node6", "web")]["state"] == "RUNNING"  # untouched
    kinds = [(e["process"], e["new_state"]) for e in cluster.console_json("events -n 100")["events"]]
    assert ("web", "STOPPED") in kinds and ("web", "EXITED") in kinds


def test_errors_are_plain_words_and_fail_the_exit_status(cluster: Cluster, app_bundle: Path) -> None:
    start_pair(cluster)
    cases = {
        "ps nosuch": "unknown agent 'nosuch'",
        "start node4 missing -- true": "bundle 'missing' is not loaded on node4",
        "stop node4 ghost": "no process 'ghost' on node4",
        f"upload node4 app {app_bundle}; start node4 app -- {PY} main.py; kill node4 app "
        "--signal SIGBOGUS": "SIGBOGUS",
        "frobnicate": "frobnicate",
    }
    for command, words in cases.items():
        result = cluster.console(command, check=False)
        assert result.returncode != 0, command
        assert words in result.stdout + result.stderr, (command, result.stdout, result.stderr)
        assert "Traceback" not in result.stderr


def test_wrong_and_revoked_tokens(cluster: Cluster) -> None:
    start_pair(cluster)
    bad = cluster.console("agents", check=False, token="not-a-token")
    assert bad.returncode == 2 and "authentication failed" in bad.stderr
    cluster.start_agent("intruder", token="guessed-token")
    wait_until(lambda: "authentication failed" in cluster.server_log(), what="auth failure logged")
    assert "intruder" not in cluster.agents_view()

    cluster.lotc("token", "revoke", "node6", "--db", str(cluster.db))
    wait_until(lambda: not cluster.agents_view()["node6"]["online"], timeout=15,
               what="revoked agent cut off")
    wait_until(lambda: "revoked" in cluster.agent_log("node6"), what="agent told why")
    assert cluster.agents_view()["node4"]["online"]


def test_stats_and_events_flow_to_the_console(cluster: Cluster, app_bundle: Path) -> None:
    start_pair(cluster)
    cluster.console(f"upload node6 app {app_bundle}; start node6 app -- {PY} main.py")
    history = wait_until(lambda: (h := cluster.console_json("stats node6"))
                         and h.get("processes") and h, what="stats with processes")
    assert history["samples"][-1]["node"]["mem_total"] > 0
    assert history["processes"][0]["name"] == "app"
    assert "app" in cluster.console("stats node6").stdout
    # Issue 14 item 11: `stats all` and `stats GLOB`, a section per agent, like every command.
    wait_until(lambda: all(h["samples"] for h in cluster.console_json("stats all")["stats"]),
               what="stats of both agents")
    text = cluster.console("stats all").stdout
    assert text.index("node4  (latest report") < text.index("node6  (latest report"), text
    assert [h["agent"] for h in cluster.console_json("stats 'node*'")["stats"]] == [
        "node4", "node6"]
    assert "no agent matches 'x*'" in cluster.console("stats 'x*'", check=False).stderr
