"""Issue 19 item 1: `lotc server --http-listen` serves /metrics, scraped over real HTTP.

A real server and agent (tests/cluster.py); the page is fetched with urllib and read
with prometheus_client's own parser, as Prometheus would read it.
"""
from __future__ import annotations

import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.cluster import LOTC, Cluster, free_port, port_open, wait_until

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(url: str) -> Samples:
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        text = response.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def test_metrics_show_agents_processes_logins_and_frames(cluster: Cluster,
                                                         app_bundle: Path) -> None:
    http_port = free_port()
    cluster.start_server("--http-listen", f"127.0.0.1:{http_port}",
                         "--http-listen", f"[::1]:{http_port}")
    url = f"http://127.0.0.1:{http_port}/metrics"
    wait_until(lambda: port_open("127.0.0.1", http_port), what="HTTP listener")
    cluster.start_agent("n1")
    cluster.wait_online("n1")
    cluster.console(f"upload n1 app {app_bundle}; start n1 app -- {sys.executable} main.py; "
                    f"start n1 app --name flap --restart always -- {sys.executable} -c "
                    "'raise SystemExit(3)'")

    def ready() -> Samples | None:
        samples = scrape(url)
        rss = value(samples, "lotc_process_rss_bytes", agent="n1", process="app")
        flaps = value(samples, "lotc_process_restarts_total", agent="n1", process="flap")
        return samples if rss and flaps and flaps >= 1 else None

    samples = wait_until(ready, timeout=30, interval=0.2, what="app measured, flap restarted")
    assert value(samples, "lotc_agent_online", agent="n1") == 1
    age = value(samples, "lotc_agent_last_seen_age_seconds", agent="n1")
    assert age is not None and 0 <= age < 10
    assert value(samples, "lotc_process_state", agent="n1", process="app", state="running") == 1
    assert value(samples, "lotc_process_restarts_total", agent="n1", process="app") == 0
    assert value(samples, "lotc_connections", kind="agent") == 1
    heartbeats = value(samples, "lotc_frames_received_total", listener="agent", type="HEARTBEAT")
    assert heartbeats is not None and heartbeats >= 1
    assert (value(samples, "lotc_frames_received_total", listener="console", type="PROC_START")
            or 0) >= 2
    assert (value(samples, "lotc_console_request_seconds_count", type="PROC_START") or 0) >= 2
    assert (value(samples, "lotc_db_write_seconds_count") or 0) >= 1
    assert value(samples, "lotc_failed_logins_total") == 0

    refused = cluster.console("agents", check=False, token="admin.not-the-secret")
    assert refused.returncode != 0
    wait_until(lambda: value(scrape(url), "lotc_failed_logins_total") == 1,
               what="the failed login counted")
    # The same page on IPv6.
    assert value(scrape(f"http://[::1]:{http_port}/metrics"), "lotc_agent_online",
                 agent="n1") == 1

    # A bad path is a 404, a bad method a 405, and the server carries on.
    for path, method, status in (("/nothing", "GET", 404), ("/metrics", "POST", 405)):
        request = urllib.request.Request(f"http://127.0.0.1:{http_port}{path}", method=method)
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(request, timeout=10)
        assert caught.value.code == status
    assert value(scrape(url), "lotc_agent_online", agent="n1") == 1
    assert cluster.server is not None and cluster.server.poll() is None

    cluster.kill_agent("n1")
    wait_until(lambda: value(scrape(url), "lotc_agent_online", agent="n1") == 0,
               timeout=20, interval=0.2, what="n1 offline in /metrics")


def test_http_port_in_use_is_a_plain_error(tmp_path: Path) -> None:
    http_port = free_port()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", http_port))
        taken.listen()
        result = subprocess.run(
            [*LOTC, "server", "--db", str(tmp_path / "other.db"), "--listen", "127.0.0.1:0",
             "--admin-listen", "127.0.0.1:0", "--http-listen", f"127.0.0.1:{http_port}"],
            capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL, check=False)
    assert result.returncode != 0
    assert f"cannot listen on 127.0.0.1:{http_port}" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "other.db").exists()  # refused before any database was made
