"""Bundle versions and rollback through the real console against two real agents (issue 17
item 4): `bundles AGENT --versions`, `rollback SELECTOR BUNDLE [SHA]` restarting what runs
the bundle on that version, and the rolled-back version kept across an agent restart.
"""
from __future__ import annotations

from pathlib import Path

from tests.agent_helpers import PY
from tests.cluster import Cluster, wait_until

APP = "import time\nprint('version', open('VERSION').read(), flush=True)\ntime.sleep(600)\n"


def _upload(cluster: Cluster, tmp_path: Path, version: str) -> None:
    app = tmp_path / version / "app"
    app.mkdir(parents=True)
    (app / "app.py").write_text(APP)
    (app / "VERSION").write_text(version)
    cluster.console(f"upload n1,n2 app {app}")


def _running_version(cluster: Cluster, agent: str) -> str:
    versions = {(r["agent"], r["name"]): r["bundle_sha256"]
                for r in cluster.console_json("ps")["processes"]}
    return versions.get((agent, "web")) or ""


def _sha_of(cluster: Cluster, agent: str) -> str:
    return next(b["sha256"] for b in cluster.console_json(f"bundles {agent}")["bundles"]
                if b["name"] == "app")


def test_versions_and_rollback(cluster: Cluster, tmp_path: Path) -> None:
    cluster.start_server()
    for agent in ("n1", "n2"):
        cluster.start_agent(agent)
    cluster.wait_online("n1", "n2")
    shas = []
    for number, version in enumerate(("v1", "v2", "v3")):
        _upload(cluster, tmp_path, version)
        shas.append(_sha_of(cluster, "n1"))
        cluster.console(f"start n1,n2 app --name web -- {PY} app.py" if number == 0 else
                        "restart n1,n2 web")
    assert len(set(shas)) == 3
    wait_until(lambda: _running_version(cluster, "n1") == shas[2], what="v3 running")
    # a restart's first half (the old run's end, asked for) leaves the desired state
    # running: only ends nobody asked for are followed (controller._follow_end)
    assert all(p["desired"] == "RUNNING" for p in cluster.console_json("ps")["processes"])

    listed = cluster.console("bundles n1 --versions").stdout
    rows = [line.split() for line in listed.splitlines()[1:]]
    assert [r[2] for r in rows] == [s[:12] for s in reversed(shas)], listed
    assert rows[0][-1] == "current" and rows[1][-1] != "current"

    out = cluster.console("rollback n1,n2 app").stdout
    assert out.count(f"now at {shas[1][:12]}, restarted web") == 2, out
    for agent in ("n1", "n2"):
        assert _running_version(cluster, agent) == shas[1]
    log = cluster.root / "state-n1" / "processes" / "logs" / "web" / "stdout.log"
    wait_until(lambda: "version v2" in log.read_text().splitlines()[-1], what="v2 printed")

    cluster.console(f"rollback n1 app {shas[0][:10]}")
    assert _running_version(cluster, "n1") == shas[0]
    cluster.kill_agent("n1")  # a reconnect must not bring v3 back
    cluster.start_agent("n1")
    cluster.wait_online("n1")
    assert _sha_of(cluster, "n1") == shas[0] and _running_version(cluster, "n1") == shas[0]

    bad = cluster.console("rollback n1 app ffffffff", check=False)
    assert bad.returncode == 1 and "no stored version of app has a SHA-256 starting " \
        "'ffffffff'" in bad.stdout, bad.stdout
    assert cluster.console("rollback n1 app not-hex", check=False).returncode == 2
