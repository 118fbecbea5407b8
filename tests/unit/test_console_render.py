"""Rendering of every reply type, as tables for people and as JSON for scripts."""
from __future__ import annotations

import json

from admin_console.commands import build_registry
from admin_console.commands.listing import AgentsListing, Listing, PsListing
from admin_console.commands.meta import HelpPage
from admin_console.commands.results import render_results, results_ok
from admin_console.commands.stats import StatsResult
from admin_console.commands.streams import Collected, event_text, log_text
from admin_console.commands.tokens import TokenResult
from admin_console.progress import Progress
from admin_console.render import ago, human_duration, human_size, iso_time, table, to_json
from protocol.enums import BundleKind, DesiredState, EventKind, ProcessState, Role, StreamKind
from protocol.errors import ErrorCode
from protocol.messages import (
    AgentEntry,
    AgentResult,
    BundleEntry,
    Event,
    Label,
    LabelsEntry,
    LogLines,
    NodeStats,
    Ok,
    ProcessEntry,
    ProcessStats,
    StatsHistory,
    StatsHistorySample,
    Token,
    TokenCreate,
    TokenRevoke,
)

REGISTRY = build_registry()
NOW = 1_700_000_000_000_000  # 2023-11-14T22:13:20Z
SECOND = 1_000_000


def render(command: str, result: object, as_json: bool = False) -> str:
    return REGISTRY.get(command).render(result, as_json)


# ---------------------------------------------------------------- helpers


def test_table_aligns_columns() -> None:
    text = table(("A", "NUMBER"), [("x", 5), ("longer", 12345)], right=(1,))
    assert text.splitlines() == ["A       NUMBER", "x            5", "longer   12345"]
    assert table(None, [("a", None)]) == "a  -"
    assert table(("A",), []) == "A"


def test_human_figures() -> None:
    assert human_size(512) == "512 B"
    assert human_size(1536) == "1.5 KiB"
    assert human_size(3 * 1024**3) == "3.0 GiB"
    assert human_duration(42) == "42s"
    assert human_duration(3725) == "1h2m"
    assert human_duration(90000) == "1d1h"
    assert ago(NOW - 2 * SECOND, NOW) == "2s ago"
    assert ago(0, NOW) == "never"
    assert ago(NOW + 5 * SECOND, NOW) == "in 5s"


def test_json_conventions() -> None:
    entry = AgentEntry(name="n1", last_seen_us=NOW, connected_us=0, clock_offset_us=1500)
    document = to_json(entry)
    assert document["last_seen_us"] == NOW
    assert document["last_seen"] == "2023-11-14T22:13:20.000Z"
    assert document["connected"] is None  # 0 means never
    assert document["clock_offset_us"] == 1500 and "clock_offset" not in document
    bundle = to_json(BundleEntry(sha256=b"\x01\xff", kind=BundleKind.TAR))
    assert bundle["sha256"] == "01ff" and bundle["kind"] == "TAR"
    assert iso_time(0) is None


# ---------------------------------------------------------------- results


RESULTS = (
    AgentResult(agent="node-1", code=ErrorCode.OK, message="started pid 4242"),
    AgentResult(agent="node-22", code=ErrorCode.UNKNOWN_BUNDLE, message="unknown bundle 'x'"),
)


def test_results_table_and_status() -> None:
    assert render_results(RESULTS, False).splitlines() == [
        "node-1   ok      started pid 4242",
        "node-22  FAILED  unknown bundle 'x'",
    ]
    assert not results_ok(RESULTS) and results_ok(RESULTS[:1])
    assert render_results((), False) == "no agent matched"
    for name in ("start", "stop", "kill", "upload", "remove"):
        assert not REGISTRY.get(name).succeeded(RESULTS)


def test_results_json() -> None:
    document = json.loads(render_results(RESULTS, True))
    assert document["ok"] is False
    assert document["results"][1] == {"agent": "node-22", "code": "UNKNOWN_BUNDLE",
                                      "message": "unknown bundle 'x'"}


# ---------------------------------------------------------------- lists


AGENTS = AgentsListing((
    AgentEntry(name="node-1", online=True, hostname="h1", address="127.0.0.1:50000",
               version="lotc 0.1.0", last_seen_us=NOW - 2 * SECOND, clock_offset_us=1200,
               clock_source="pool.ntp.org", clock_measured_us=NOW - 300 * SECOND, processes=3),
    AgentEntry(name="node-2", online=False, address="[::1]:50001", last_seen_us=NOW - 3600 * SECOND),
), NOW, {"node-1": LabelsEntry(
    agent="node-1", announced=(Label(key="role", value="web"), Label(key="zone", value="a")),
    console=(Label(key="zone", value="b"),))})


def test_agents_table() -> None:
    lines = render("agents", AGENTS).splitlines()
    assert lines[0].split() == ["AGENT", "STATE", "ADDRESS", "HOSTNAME", "VERSION", "LAST",
                                "SEEN", "CLOCK", "PROCS", "LABELS"]
    assert "online" in lines[1] and "2s ago" in lines[1]
    assert "+1.2ms pool.ntp.org 5m ago" in lines[1]
    # in effect, the console's zone=b (marked *) over the agent's own zone=a
    assert lines[1].split()[-3:] == ["3", "role=web", "zone=b*"]
    assert "offline" in lines[2] and "1h ago" in lines[2] and "unsynced" in lines[2]
    assert lines[2].endswith("-")  # no labels


def test_agents_json_and_empty() -> None:
    document = json.loads(render("agents", AGENTS, True))
    assert [a["name"] for a in document["agents"]] == ["node-1", "node-2"]
    assert document["agents"][0]["online"] is True
    assert document["agents"][0]["labels"] == {"role": "web", "zone": "b"}
    assert document["agents"][0]["labels_announced"] == {"role": "web", "zone": "a"}
    assert document["agents"][0]["labels_console"] == {"zone": "b"}
    assert document["agents"][1]["labels"] == {}
    assert render("agents", Listing((), NOW)) == "no agents"


PROCESSES = Listing((
    ProcessEntry(agent="node-1", name="web", bundle="web", state=ProcessState.RUNNING,
                 desired=DesiredState.RUNNING, pid=4242, exit_code=-1, restarts=2,
                 started_us=NOW - 125 * SECOND, last_liveness_us=NOW - SECOND, status="ready"),
    ProcessEntry(agent="node-2", name="web", bundle="web", state=ProcessState.BACKOFF,
                 desired=DesiredState.RUNNING, exit_code=1),
    ProcessEntry(agent="node-2", name="job", bundle="tool", state=ProcessState.EXITED,
                 desired=DesiredState.EXITED, exit_code=-1, exit_signal=9),
), NOW)


def test_ps_table_shows_desired_beside_actual() -> None:
    lines = render("ps", PROCESSES).splitlines()
    assert lines[0].split()[:7] == ["AGENT", "PROCESS", "BUNDLE", "VERSION", "DESIRED", "STATE",
                                    "HEALTH"]
    assert lines[1].split()[3:9] == ["-", "running", "running", "-", "4242", "2m5s"]
    assert "ready" in lines[1] and "1s ago" in lines[1]
    assert lines[2].split()[4:6] == ["running", "backoff*"] and "code 1" in lines[2]
    assert lines[3].split()[4:6] == ["exited", "exited"] and "SIGKILL" in lines[3]


def test_ps_shows_which_version_each_process_runs() -> None:
    versions = PsListing(PROCESSES.entries, NOW, {("node-1", "web"): bytes(range(32))})
    lines = render("ps", versions).splitlines()
    assert lines[1].split()[3] == bytes(range(32)).hex()[:12]
    assert lines[2].split()[3] == "-", "unknown: not told (an agent of an older release)"
    document = json.loads(render("ps", versions, True))
    assert document["processes"][0]["bundle_sha256"] == bytes(range(32)).hex()
    assert document["processes"][1]["bundle_sha256"] is None


def test_ps_shows_health_and_json_the_facts() -> None:
    facts = {("node-1", "web"): {"health": "healthy", "ready": "yes"}}
    listing = PsListing(PROCESSES.entries, NOW, {}, facts)
    lines = render("ps", listing).splitlines()
    assert lines[1].split()[6] == "healthy"
    assert lines[2].split()[6] == "-"  # no check, or not running
    document = json.loads(render("ps", listing, True))
    assert document["processes"][0]["facts"] == {"health": "healthy", "ready": "yes"}
    assert document["processes"][1]["facts"] == {}


def test_ps_json() -> None:
    document = json.loads(render("ps", PROCESSES, True))
    first = document["processes"][0]
    assert first["state"] == "RUNNING" and first["desired"] == "RUNNING"
    assert first["started"] == "2023-11-14T22:11:15.000Z"


BUNDLES = Listing((
    BundleEntry(agent="node-1", name="web", sha256=bytes(range(32)), kind=BundleKind.TAR,
                size=2_500_000, stored_us=NOW - 60 * SECOND),
    BundleEntry(agent="node-2", name="web", sha256=bytes(range(32)), kind=BundleKind.FILE,
                size=10, stored_us=0),
), NOW)


def test_bundles_table_and_json() -> None:
    lines = render("bundles", BUNDLES).splitlines()
    assert lines[1].split() == ["node-1", "web", "000102030405", "tar", "2.4", "MiB", "1m", "ago"]
    assert lines[2].endswith("pending")
    document = json.loads(render("bundles", BUNDLES, True))
    assert document["bundles"][0]["sha256"] == bytes(range(32)).hex()
    assert document["bundles"][1]["stored"] is None


# ---------------------------------------------------------------- stats


def _node(cpu: float, read: int) -> NodeStats:
    return NodeStats(cpu_percent=cpu, load1=0.5, load5=0.25, load15=0.125, mem_total=8 * 1024**3,
                     mem_used=2 * 1024**3, disk_read_bytes=read, disk_total=100, disk_used=40,
                     uptime_s=7200)


HISTORY = StatsResult((StatsHistory(
    agent="node-1",
    samples=(StatsHistorySample(time_us=NOW - 20 * SECOND, node=_node(10.0, 0)),
             StatsHistorySample(time_us=NOW - 10 * SECOND, node=_node(30.0, 10 * 1024 * 1024))),
    processes=(ProcessStats(name="web", pid=4242, cpu_percent=12.5, rss=50 * 1024**2,
                            threads=4, open_files=9, restarts=1, last_liveness_us=NOW - SECOND),),
),), NOW, several=False)


def test_stats_human() -> None:
    text = render("stats", HISTORY)
    assert "node-1  (latest report 10s ago, 2 in the window)" in text
    assert "cpu     30.0%" in text and "2.0 GiB / 8.0 GiB (25%)" in text
    assert "disk read 1.0 MiB/s" in text
    assert "min 10.0%  avg 20.0%  max 30.0%" in text
    assert "PROCESS" in text and "50.0 MiB" in text
    empty = StatsResult((StatsHistory(agent="node-1"),), NOW, several=False)
    assert render("stats", empty) == "node-1: no statistics in this window"


def test_stats_of_several_agents_a_section_each() -> None:
    both = StatsResult((*HISTORY.histories, StatsHistory(agent="node-2")), NOW, several=True)
    text = render("stats", both)
    assert text.startswith("node-1  (latest report")
    assert text.endswith("\n\nnode-2: no statistics in this window")
    document = json.loads(render("stats", both, True))
    assert [h["agent"] for h in document["stats"]] == ["node-1", "node-2"]


def test_stats_json() -> None:
    document = json.loads(render("stats", HISTORY, True))
    assert document["samples"][1]["node"]["cpu_percent"] == 30.0
    assert document["samples"][1]["time"] == "2023-11-14T22:13:10.000Z"
    assert document["processes"][0]["rss"] == 50 * 1024**2


# ---------------------------------------------------------------- logs and events


LINES = LogLines(agent="node-1", process="web", stream=StreamKind.STDERR, lines=("a", "b"))
EVENT = Event(seq=7, agent="node-1", time_us=NOW, kind=EventKind.PROCESS_STATE, process="web",
              old_state=ProcessState.RUNNING, new_state=ProcessState.BACKOFF, exit_code=3,
              signal=0, message="")


def test_log_and_event_lines() -> None:
    assert log_text(LINES) == "node-1/web ! a\nnode-1/web ! b"
    assert event_text(EVENT) == "2023-11-14 22:13:20Z  node-1  web  running -> backoff  exit code 3"
    offline = Event(agent="node-2", time_us=NOW, kind=EventKind.AGENT_OFFLINE, exit_code=-1,
                    message="missed heartbeats")
    assert event_text(offline) == "2023-11-14 22:13:20Z  node-2  agent-offline  missed heartbeats"


def test_stream_renders() -> None:
    assert render("logs", Collected(count=0)) == "no log lines"
    assert render("logs", Collected(count=2)) == ""  # already printed as they came
    assert json.loads(render("logs", Collected([LINES], count=1), True))["logs"][0]["stream"] \
        == "STDERR"
    assert render("events", Collected(count=0)) == "no events"
    document = json.loads(render("events", Collected([EVENT], count=1), True))
    assert document["events"][0]["kind"] == "PROCESS_STATE"
    assert document["events"][0]["time"] == "2023-11-14T22:13:20.000Z"
    assert render("events", Collected(follow=True), True) == ""  # JSON lines were printed


# ---------------------------------------------------------------- tokens, help, progress


def test_token_renders() -> None:
    created = TokenResult(TokenCreate(role=Role.AGENT, name="n3"), Token(token="s3cret"))
    assert render("token", created) == "s3cret"
    assert json.loads(render("token", created, True)) == {
        "action": "create", "role": "AGENT", "name": "n3", "token": "s3cret"}
    revoked = TokenResult(TokenRevoke(name="n3"), Ok(message=""))
    assert render("token", revoked) == "revoked n3"


def test_help_pages() -> None:
    overview = render("help", HelpPage(tuple(REGISTRY), detailed=False))
    for command in REGISTRY:
        assert command.name in overview
    detail = render("help", HelpPage((REGISTRY.get("kill"),), detailed=True))
    assert detail.startswith("usage: kill AGENT P [--signal SIG]") and "Examples:" in detail
    document = json.loads(render("help", HelpPage((REGISTRY.get("ps"),), True), True))
    assert document["commands"][0]["usage"] == "ps [AGENT [P [--show-env]]]"


class FakeTerminal:
    def __init__(self) -> None:
        self.text = ""

    def write(self, text: str) -> int:
        self.text += text
        return len(text)

    def flush(self) -> None:
        pass


def test_progress_bar() -> None:
    terminal = FakeTerminal()
    clock = iter([0.0, 1.0, 1.01, 2.0])
    progress = Progress("upload web", 2048, terminal, clock=lambda: next(clock))  # type: ignore[arg-type]
    progress.update(1024)
    progress.update(1500)  # within the redraw interval: skipped
    progress.update(2048)
    progress.finish()
    assert "upload web [###############...............]  50% 1.0 KiB/2.0 KiB" in terminal.text
    assert terminal.text.count("\r") == 3 and terminal.text.endswith("\x1b[2K")
    silent = Progress("x", 10, None)
    silent.update(5)
    silent.finish()
