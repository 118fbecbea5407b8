"""Hostile admin input on a real server: globs by the thousand, values out of range (issue 14).

fnmatch keeps 32,768 compiled patterns, about 380 kB for a 30 KB glob: 200 of
them grew the server by 76 MB. Here a real `lotc server` gets the issue's 200
distinct 30 KB globs (refused in plain words: no agent's glob is that long)
and then 3,000 distinct globs of the longest length accepted, in the costliest
shape, and its resident memory must stay within a few MB.
"""
from __future__ import annotations

import sys
from pathlib import Path

import psutil
import trio

from admin_console.client import AdminClient
from lotc.errors import LotcError, UnknownAgent
from lotc.limits import MIN_LIVENESS_MS
from lotc.names import MAX_GLOB_LENGTH
from lotc.net.address import Address
from protocol.enums import RestartPolicy
from protocol.errors import ErrorCode
from protocol.messages import AgentList, ListAgents, ProcStart
from tests.cluster import Cluster

HUGE_GLOBS = 200
HUGE_GLOB_LENGTH = 30_000
LONGEST_GLOBS = 3_000
GROWTH_LIMIT_MB = 20  # re's cache of 512 patterns costs ~4 MB; fnmatch's grew 76 MB
RUN_TIMEOUT_S = 120.0


def distinct_globs(count: int, length: int) -> list[str]:
    """`*a*a*a...7`: the shape that compiles to the largest regex, each one different."""
    globs = []
    for number in range(count):
        tail = f"-{number}"
        globs.append(("*a" * length)[:length - len(tail)] + tail)
    return globs


async def ask_every_glob(cluster: Cluster) -> tuple[float, float, list[str], int]:
    """RSS before and after (MB), the huge globs' errors, and the longest globs answered."""
    server = psutil.Process(cluster.server.pid if cluster.server else 0)
    address = Address("127.0.0.1", cluster.admin_port)
    with trio.fail_after(RUN_TIMEOUT_S):
        async with AdminClient.connect(address, token=cluster.admin_token, name="admin") as client:
            for warm_up in ("web-*", "all", "web-1"):
                await client.request(ListAgents(pattern=warm_up))
            before = server.memory_info().rss / 1e6
            refusals = []
            for glob in distinct_globs(HUGE_GLOBS, HUGE_GLOB_LENGTH):
                try:
                    await client.request(ListAgents(pattern=glob))
                except LotcError as exc:
                    refusals.append(f"{type(exc).__name__}: {str(exc)[:80]}")
            answered = 0
            for glob in distinct_globs(LONGEST_GLOBS, MAX_GLOB_LENGTH):
                try:
                    frames = await client.request(ListAgents(pattern=glob))
                    answered += isinstance(frames[-1].body, AgentList)
                except UnknownAgent:  # "no agent matches": it was compiled and tried
                    answered += 1
                except LotcError as exc:
                    raise AssertionError(f"a {MAX_GLOB_LENGTH}-character glob refused: {exc}")
            after = server.memory_info().rss / 1e6
    return before, after, refusals, answered


def test_distinct_globs_keep_the_server_memory_bounded(cluster: Cluster) -> None:
    cluster.start_server()
    cluster.token("agent", "web-1")  # an enrolled agent: every glob is tried against it
    before, after, refusals, answered = trio.run(ask_every_glob, cluster)
    print(f"server RSS {before:.1f} MB -> {after:.1f} MB after {HUGE_GLOBS} globs of "
          f"{HUGE_GLOB_LENGTH} and {LONGEST_GLOBS} of {MAX_GLOB_LENGTH} characters")
    assert after - before < GROWTH_LIMIT_MB
    refusal = (f"InvalidRequest: agent glob is {HUGE_GLOB_LENGTH} characters long; "
               f"the limit is {MAX_GLOB_LENGTH}")
    assert refusals == [refusal] * HUGE_GLOBS
    assert answered == LONGEST_GLOBS
    assert cluster.server is not None and cluster.server.poll() is None


async def _start(cluster: Cluster, liveness_ms: int) -> str:
    address = Address("127.0.0.1", cluster.admin_port)
    with trio.fail_after(RUN_TIMEOUT_S):
        async with AdminClient.connect(address, token=cluster.admin_token, name="admin") as client:
            try:
                frames = await client.request(ProcStart(
                    target="n1", name="app", bundle="app", argv=(sys.executable, "main.py"),
                    liveness_ms=liveness_ms, restart=RestartPolicy.NEVER))
            except LotcError as exc:
                return f"{type(exc).__name__}: {exc}"
    results = frames[-1].body.results
    return "; ".join(r.message for r in results if r.code != ErrorCode.OK)


def test_the_server_refuses_a_liveness_too_short_from_any_client(
    cluster: Cluster, app_bundle: Path
) -> None:
    """What the console checks, the server checks again (an old console, a script)."""
    cluster.start_server()
    cluster.start_agent("n1")
    cluster.wait_online("n1")
    cluster.console(f"upload n1 app {app_bundle}")
    assert trio.run(_start, cluster, MIN_LIVENESS_MS // 2) == (
        f"InvalidRequest: a liveness timeout of {MIN_LIVENESS_MS // 2} ms is too short: "
        f"at least {MIN_LIVENESS_MS} ms (0 turns the watchdog off)")
    assert ("n1", "app") not in cluster.processes()
    assert trio.run(_start, cluster, MIN_LIVENESS_MS) == ""  # the least accepted
    assert ("n1", "app") in cluster.processes()
