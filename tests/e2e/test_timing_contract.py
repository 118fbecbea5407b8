"""One timing contract (issue 15 item 4): the server's numbers set its clients' limits.

A real server started with a short heartbeat and ping interval sends them in TIMING
right after WELCOME. A real agent and a real console (`lotc console -c "events -f"`),
each behind a TCP proxy (tests/fault_proxy.py), must then notice a silent server
within the limit derived from those numbers (lotc/timing.py: missed x (ping +
heartbeat) = 3 x (0.5 + 0.2) = 2.1 s), not their old defaults (15 s and 30 s).
"""
from __future__ import annotations

import os
import subprocess
import time

import pytest

from lotc import timing
from protocol.enums import Role
from tests.cluster import LOTC, Cluster, wait_until
from tests.fault_proxy import FaultProxy

pytestmark = pytest.mark.timeout(120)
HEARTBEAT_S, PING_S, MISSED = 0.2, 0.5, 3
RULE = timing.ServerTiming(HEARTBEAT_S, MISSED, 2.0, 60.0, ping_s=PING_S)
LIMIT_S = RULE.link(Role.AGENT).server_silence_limit_s  # 2.1 s, for agents and consoles
SLACK_S = 3.0  # process start-up, log polling and scheduling on a busy machine
SERVER_FLAGS = ("--heartbeat", str(HEARTBEAT_S), "--ping-interval", str(PING_S),
                "--missed-heartbeats", str(MISSED))


def test_the_derived_limits_are_short_here() -> None:
    assert LIMIT_S == pytest.approx(2.1)
    assert RULE.link(Role.ADMIN).server_silence_limit_s == LIMIT_S
    # the old rules, which the clients must not be using here
    assert timing.legacy_agent_server_silence_s(HEARTBEAT_S) == 15.0
    assert timing.LEGACY_CONSOLE_SERVER_SILENCE_S == 30.0


def test_an_agent_notices_a_silent_server_within_the_derived_limit(cluster: Cluster) -> None:
    cluster.start_server(*SERVER_FLAGS)
    with FaultProxy(("127.0.0.1", cluster.agent_port)) as link:
        cluster.start_agent("n1", extra=("--server", f"127.0.0.1:{link.port}"))
        told = f"silence limit {LIMIT_S:g} s"
        wait_until(lambda: told in cluster.agent_log("n1"), what="the agent took TIMING")
        cluster.wait_online("n1")
        link.stall()
        stalled_at = time.monotonic()
        noticed = f"nothing heard from the server for {LIMIT_S:g} s"
        wait_until(lambda: noticed in cluster.agent_log("n1"), timeout=LIMIT_S + SLACK_S,
                   interval=0.02, what="the agent noticing the silent server")
        elapsed = time.monotonic() - stalled_at
        # Counted from the last frame heard, which came at most one ping period before.
        assert LIMIT_S - PING_S - HEARTBEAT_S - 0.1 <= elapsed <= LIMIT_S + SLACK_S, elapsed
        # and it reconnects through the proxy (new connections pass normally)
        wait_until(lambda: link.accepted >= 2, timeout=10, what="the agent reconnecting")
        cluster.wait_online("n1")
    assert "Traceback" not in cluster.agent_log("n1")


def test_a_console_notices_a_silent_server_within_the_derived_limit(cluster: Cluster) -> None:
    cluster.start_server(*SERVER_FLAGS)
    with FaultProxy(("127.0.0.1", cluster.admin_port)) as link:
        console = subprocess.Popen(
            [*LOTC, "--log-level", "debug", "console", "--server", f"127.0.0.1:{link.port}",
             "-c", "events -f"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
            env={**os.environ, "LOTC_TOKEN": cluster.admin_token})
        try:
            stderr_lines: list[str] = []
            told = f"server silence limit {LIMIT_S:g} s"
            assert console.stderr is not None
            deadline = time.monotonic() + 20
            while not any(told in line for line in stderr_lines):
                line = console.stderr.readline()  # the console logs it once it has TIMING
                assert line and time.monotonic() < deadline, "".join(stderr_lines)
                stderr_lines.append(line)
            link.stall()
            stalled_at = time.monotonic()
            out, err = console.communicate(timeout=LIMIT_S + SLACK_S)
            elapsed = time.monotonic() - stalled_at
        finally:
            if console.poll() is None:
                console.kill()
                console.communicate()
    assert console.returncode != 0
    assert f"the server has been silent for {LIMIT_S:g} s" in out + err, out + err
    assert LIMIT_S - PING_S - HEARTBEAT_S - 0.1 <= elapsed <= LIMIT_S + SLACK_S, elapsed
