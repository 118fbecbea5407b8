"""Health checks run by a real Supervisor against real programs (issue 17 item 2):
an HTTP server in the bundle that can be told to fail, a TCP port nobody opens, and an
exec check. Through the console: tests/e2e/test_health_console.py.
"""
# ruff: noqa: F811  (pytest fixtures imported from tests.agent_helpers, then used as arguments)
from __future__ import annotations

from pathlib import Path

import trio

from lotc.agent.health import probe
from lotc.agent.process import ProcessSpec
from lotc.health_checks import parse_check
from protocol.enums import EventKind, ProcessState, RestartPolicy
from tests.agent_helpers import PY, Harness, bundle, sup, wait_until  # noqa: F401
from tests.cluster import free_port

# Serves /healthz: 200 until a file named "fail" appears beside it, then 500.
WEB = """
import http.server, os, sys
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(500 if os.path.exists("fail") else 200)
        self.end_headers()
    def log_message(self, *args):
        pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
"""


def _health_events(h: Harness, name: str) -> list[str]:
    return [e.reason for e in h.events if e.process == name and e.kind == EventKind.HEALTH]


async def test_http_check_healthy_then_unhealthy_restarts_by_policy(sup: Harness) -> None:
    h = sup
    port = free_port()
    h.program("web.py", WEB)
    url = f"http://127.0.0.1:{port}/healthz"
    await h.sup.start(ProcessSpec("web", "b", [PY, "web.py", str(port)], check=url,
                                  check_interval=0.1, check_timeout=1.0, check_failures=2,
                                  backoff_base=0.0))
    assert h.sup._records["web"].health == "starting"
    await wait_until(lambda: h.sup._records["web"].health == "healthy", timeout=10)
    assert h.sup.get("web").ready  # the first passing check makes it ready
    assert _health_events(h, "web") == [f"healthy: GET {url} answered 200"]

    (h.bundle_dir / "fail").write_text("")
    await wait_until(lambda: h.sup.get("web").restarts == 1, timeout=10)
    said = _health_events(h, "web")
    assert said[1] == f"unhealthy: 2 checks in a row failed (last: GET {url} answered 500)"
    ends = [e.reason for e in h.events if e.process == "web" and
            e.new_state == ProcessState.BACKOFF]
    assert ends and ends[0].startswith("killed after 2 failed health checks in a row"), ends
    (h.bundle_dir / "fail").unlink()
    await wait_until(lambda: h.sup._records["web"].health == "healthy", timeout=10)


async def test_tcp_check_unhealthy_under_policy_never_stays_running(sup: Harness) -> None:
    h = sup
    port = free_port()  # nobody listens there
    await h.sup.start(ProcessSpec("idle", "b", ["sleep", "60"], check=f"tcp:{port}",
                                  check_interval=0.05, check_failures=3, check_grace=0,
                                  restart=RestartPolicy.NEVER))
    await wait_until(lambda: h.sup._records["idle"].health == "unhealthy", timeout=10)
    assert _health_events(h, "idle")[0].startswith(
        f"unhealthy: 3 checks in a row failed (last: tcp 127.0.0.1:{port}: ")
    assert h.sup.get("idle").state == ProcessState.RUNNING and not h.sup.get("idle").ready


async def test_exec_check_runs_in_the_bundle(sup: Harness) -> None:
    h = sup
    await h.sup.start(ProcessSpec("job", "b", ["sleep", "60"], check="exec:test -f ok",
                                  check_interval=0.05, check_failures=1000))
    rec = h.sup._records["job"]
    await wait_until(lambda: rec.health_why.startswith("test exited 1"))  # a probe failed
    assert rec.health == "starting"  # failures before the first pass: not yet healthy
    (h.bundle_dir / "ok").write_text("")
    await wait_until(lambda: h.sup._records["job"].health == "healthy", timeout=10)
    assert _health_events(h, "job") == ["healthy: test exited 0"]


async def test_probes_are_bounded_and_time_out() -> None:
    limiter = trio.CapacityLimiter(2)
    check = parse_check("exec:sleep 5")
    started = trio.current_time()
    async with trio.open_nursery() as nursery:
        for _ in range(4):
            nursery.start_soon(probe, check, 0.3, Path("."), {"PATH": "/bin:/usr/bin"},
                               limiter)
        await wait_until(lambda: limiter.statistics().tasks_waiting == 2)
        assert limiter.borrowed_tokens == 2
    elapsed = trio.current_time() - started
    assert 0.55 < elapsed < 2.0  # two rounds of 0.3 s timeouts, never the 5 s sleep
    healthy, why = await probe(check, 0.1, Path("."), {"PATH": "/bin:/usr/bin"}, limiter)
    assert not healthy and why == "exec:sleep 5: no answer within 0.1 s"
