"""Health checks of a run: probe, judge, report, restart (issue 17 item 2).

One task per run with a check (runner.py starts it beside the watchdog). Every
`check_interval` it probes, under `check_timeout`, through one CapacityLimiter
for the whole agent: a fleet of checks never runs more than LIMIT at once,
and none blocks the trio loop (HTTP runs in a worker thread, TCP and exec are
trio's own). The run's health starts as `starting`; the first pass makes it
`healthy` and ready (as READY=1 does); `check_failures` failures in a row make
it `unhealthy` (failures before the first pass count only after `check_grace`
since the start, as with Nomad's check_restart grace), and then, unless its policy is `never`, the run is killed so
its restart policy starts it again (Nomad's check_restart). Each change of
health is one HEALTH event saying why. Checks pause while the run is stopped.
"""
from __future__ import annotations

import logging
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path

import trio

from lotc.agent.lifecycle import ProcessEvent
from lotc.agent.process import ProcessRecord
from lotc.health_checks import Check, parse_check
from protocol.enums import EventKind, ProcessState, RestartPolicy

__all__ = ["LIMIT", "Health", "probe", "watch_health"]

logger = logging.getLogger(__name__)

LIMIT = 16  # checks running at once on one agent


class Health:
    STARTING = "starting"
    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None  # a 3xx is an answer, healthy: do not follow it


_OPENER = urllib.request.build_opener(_NoRedirects)


def _http(url: str, timeout: float) -> tuple[bool, str]:
    """Blocking: GET url; 2xx/3xx healthy."""
    try:
        with _OPENER.open(url, timeout=timeout) as answer:
            code = answer.status
    except urllib.error.HTTPError as exc:
        code = exc.code
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return False, f"GET {url}: {reason}"
    return code < 400, f"GET {url} answered {code}"


async def probe(check: Check, timeout: float, cwd: Path, env: Mapping[str, str],
                limiter: trio.CapacityLimiter) -> tuple[bool, str]:
    """(healthy, why) of one probe, never longer than `timeout`."""
    async with limiter:
        with trio.move_on_after(timeout):
            return await _probe(check, timeout, cwd, env)
    return False, f"{check.text()}: no answer within {timeout:g} s"


async def _probe(check: Check, timeout: float, cwd: Path,
                 env: Mapping[str, str]) -> tuple[bool, str]:
    if check.kind == "http":
        return await trio.to_thread.run_sync(_http, check.url, timeout,
                                             abandon_on_cancel=True)
    if check.kind == "tcp":
        try:
            stream = await trio.open_tcp_stream(check.host, check.port)
        except OSError as exc:
            return False, f"tcp {check.host}:{check.port}: {exc.strerror or exc}"
        await stream.aclose()
        return True, f"tcp {check.host}:{check.port} accepted"
    try:
        done = await trio.run_process(list(check.argv), cwd=cwd, env=dict(env), check=False,
                                      stdin=b"", capture_stdout=True, capture_stderr=True)
    except OSError as exc:
        return False, f"{check.argv[0]}: {exc.strerror or exc}"
    if done.returncode == 0:
        return True, f"{check.argv[0]} exited 0"
    said = done.stderr.decode(errors="replace").strip().splitlines()
    tail = f": {said[-1][:200]}" if said else ""
    return False, f"{check.argv[0]} exited {done.returncode}{tail}"


async def watch_health(rec: ProcessRecord, cwd: Path, env: Mapping[str, str],
                       limiter: trio.CapacityLimiter, emit: Callable[[ProcessEvent], None],
                       clock: Callable[[], int], kill: Callable[[], None]) -> None:
    """The health of the current run, until it ends (cancelled by the runner)."""
    check = parse_check(rec.spec.check)
    failures = 0

    def judge(health: str, why: str) -> None:
        if health != rec.health:
            rec.health, rec.health_why = health, why
            emit(ProcessEvent(clock(), rec.spec.name, rec.state, rec.state,
                              f"{health}: {why}", kind=EventKind.HEALTH))
            rec.notify_changed()

    rec.health, rec.health_why = Health.STARTING, "no check has passed yet"
    grace_ends = trio.current_time() + rec.spec.check_grace
    while True:
        await trio.sleep(rec.spec.check_interval)
        while rec.state == ProcessState.STOPPED:
            await rec.resumed.wait()
        healthy, why = await probe(check, rec.spec.check_timeout, cwd, env, limiter)
        rec.health_why = why
        if healthy:
            failures = 0
            rec.ready = True
            judge(Health.HEALTHY, why)
            continue
        if rec.health == Health.STARTING and trio.current_time() < grace_ends:
            continue  # still starting up: a failure now is not held against it
        failures += 1
        logger.info("%s: check failed (%d of %d): %s", rec.spec.name, failures,
                    rec.spec.check_failures, why)
        if failures < rec.spec.check_failures:
            continue
        judge(Health.UNHEALTHY, f"{failures} checks in a row failed (last: {why})")
        if rec.spec.restart != RestartPolicy.NEVER:
            rec.health_failed = True
            kill()
            return
        failures = 0  # policy never: it stays, unhealthy, and the checks go on
