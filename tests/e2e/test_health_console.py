"""Health checks through the real `lotc console -c` against a real agent (issue 17 item 2):
an HTTP server in the bundle that can be told to fail, `ps` showing its health, events
saying why, and the restart its policy makes after failed checks.
"""
from __future__ import annotations

import re
from pathlib import Path

from tests.agent_helpers import PY
from tests.cluster import Cluster, free_port, wait_until
from tests.e2e.test_health import WEB


def _health(cluster: Cluster) -> str:
    rows = [line.split() for line in cluster.console("ps n1").stdout.splitlines()]
    header, *body = rows
    row = next(r for r in body if r[1] == "web")
    return row[header.index("HEALTH")]


def test_http_check_through_the_console(cluster: Cluster, tmp_path: Path) -> None:
    cluster.start_server()
    cluster.start_agent("n1")
    cluster.wait_online("n1")
    app = tmp_path / "app"
    app.mkdir()
    (app / "web.py").write_text(WEB)
    port = free_port()
    url = f"http://127.0.0.1:{port}/healthz"
    cluster.console(f"upload n1 app {app}; start n1 app --name web --check {url} "
                    f"--check-interval 200ms --check-failures 2 -- {PY} web.py {port}")
    wait_until(lambda: _health(cluster) == "healthy", timeout=20, what="healthy in ps")
    detail = cluster.console("ps n1 web").stdout
    assert re.search(r"health:\s+healthy", detail) and re.search(r"ready:\s+yes", detail)
    assert f"check:            {url}" in detail or url in detail, detail
    assert f"healthy: GET {url} answered 200" in cluster.console("events -n 20").stdout

    for path in (cluster.root / "state-n1").rglob("web.py"):  # the agent's copy of it
        (path.parent / "fail").write_text("")
    wait_until(lambda: cluster.processes()[("n1", "web")]["restarts"] >= 1, timeout=20,
               what="restarted after failed checks")
    events = cluster.console("events -n 50").stdout
    assert f"unhealthy: 2 checks in a row failed (last: GET {url} answered 500)" in events
    assert "killed after 2 failed health checks in a row" in events, events

    result = cluster.console("start n1 app --name bad --check ftp://x -- true", check=False)
    assert result.returncode == 2 and "is not a check" in result.stdout + result.stderr
