"""`agents`, `ps` and `bundles`: tables of what the server knows."""
from __future__ import annotations

import argparse
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from admin_console.bounds import agent_selector
from admin_console.commands.base import Command, Context
from admin_console.commands.detail import (
    DetailFor,
    detail_request,
    fetch_detail,
    fetch_details,
    render_detail,
)
from admin_console.errors import UsageError
from admin_console.parsing import CommandParser
from admin_console.render import (
    ago,
    dumps,
    enum_word,
    human_duration,
    human_size,
    table,
    to_json,
)
from lotc.parse.signals import signal_word
from lotc.selectors import effective_labels
from protocol.enums import ProcessState
from protocol.messages import (
    AgentEntry,
    AgentList,
    BundleEntry,
    BundleList,
    BundleVersion,
    BundleVersions,
    LabelList,
    LabelsEntry,
    ListAgents,
    ListBundles,
    ListBundleVersions,
    ListLabels,
    ListProcesses,
    ListProcessFacts,
    ListRunVersions,
    ProcessDetail,
    ProcessEntry,
    ProcessFacts,
    ProcessList,
    QueryProcess,
    RunVersions,
)

SHA_SHOWN = 12  # hex digits of a bundle's SHA-256 in tables; --json has all of them
LIVE_STATES = {ProcessState.STARTING, ProcessState.RUNNING, ProcessState.STOPPED}


@dataclass(frozen=True)
class Listing:
    """Entries of a list reply, and when they were fetched (for relative times)."""

    entries: tuple[Any, ...]
    now_us: int


def now_us() -> int:
    return time.time_ns() // 1000


class ListCommand(Command):
    """Shared by the list commands: an optional AGENT pattern, a MORE-split reply."""

    arguments: ClassVar[tuple[str, ...]] = ("agent",)
    request_type: type
    reply_type: type
    reply_field: str

    def add_arguments(self, parser: CommandParser) -> None:
        # empty pattern: every agent, and an empty table (not an error) when there are none
        parser.add_argument("agent", nargs="?", default="", type=agent_selector)

    def parse(self, argv: Sequence[str]) -> Any:
        args: argparse.Namespace = self.parser.parse(argv)
        return self.request_type(pattern=args.agent)

    async def execute(self, ctx: Context, parsed: Any) -> Listing:
        entries: list[Any] = []
        for frame in await ctx.require_client().request(parsed):
            if isinstance(frame.body, self.reply_type):
                entries.extend(getattr(frame.body, self.reply_field))
        return Listing(tuple(entries), now_us())

    def render(self, result: Listing, json: bool) -> str:
        if json:
            return dumps({self.reply_field: list(result.entries)})
        if not result.entries:
            return f"no {self.reply_field}"
        return self.table(result)

    def table(self, result: Listing) -> str:
        raise NotImplementedError


@dataclass(frozen=True)
class AgentsListing(Listing):
    """An agent listing, and each agent's labels (LABEL_LIST)."""

    labels: Mapping[str, LabelsEntry] = field(default_factory=dict)


class AgentsCommand(ListCommand):
    """List agents: online or not, where, version, clock, process count and labels.

    AGENT is a selector (see `help label`); without it, every agent. LABELS
    are the labels selectors match: the agent's own (--label), and those set
    with `label`, which win for the same key (marked '*'). --json gives
    `labels` (in effect), `labels_announced` and `labels_console`.

    Examples:
      agents
      agents web-*
      agents role=web
    """

    name = "agents"
    usage = "agents [AGENT]"
    request_type = ListAgents
    reply_type = AgentList
    reply_field = "agents"

    async def execute(self, ctx: Context, parsed: Any) -> AgentsListing:
        listing = await super().execute(ctx, parsed)
        labels: dict[str, LabelsEntry] = {}
        for frame in await ctx.require_client().request(ListLabels(pattern=parsed.pattern)):
            if isinstance(frame.body, LabelList):
                labels.update((entry.agent, entry) for entry in frame.body.agents)
        return AgentsListing(listing.entries, listing.now_us, labels)

    def render(self, result: Listing, json: bool) -> str:
        if not json:
            return super().render(result, json)
        labels = result.labels if isinstance(result, AgentsListing) else {}
        return dumps({"agents": [{**to_json(a), **_labels_json(labels.get(a.name))}
                                 for a in result.entries]})

    def table(self, result: Listing) -> str:
        labels = result.labels if isinstance(result, AgentsListing) else {}
        rows = [(*_agent_row(a, result.now_us), _labels_text(labels.get(a.name)))
                for a in result.entries]
        return table(("AGENT", "STATE", "ADDRESS", "HOSTNAME", "VERSION", "LAST SEEN",
                      "CLOCK", "PROCS", "LABELS"), rows, right=(7,))


def _labels_json(entry: LabelsEntry | None) -> dict[str, dict[str, str]]:
    announced = {label.key: label.value for label in entry.announced} if entry else {}
    console = {label.key: label.value for label in entry.console} if entry else {}
    return {"labels": effective_labels(announced, console), "labels_announced": announced,
            "labels_console": console}


def _labels_text(entry: LabelsEntry | None) -> str:
    """'role=web zone=a*': in effect, sorted; '*' marks those set from the console."""
    if entry is None:
        return "-"
    doc = _labels_json(entry)
    console = doc["labels_console"]
    return " ".join(f"{k}={v}{'*' if k in console else ''}"
                    for k, v in sorted(doc["labels"].items())) or "-"


def _agent_row(agent: AgentEntry, now: int) -> tuple[object, ...]:
    return (agent.name, "online" if agent.online else "offline", agent.address or "-",
            agent.hostname or "-", agent.version or "-",
            ago(agent.last_seen_us, now),
            clock_text(agent, now), agent.processes)


def clock_text(agent: AgentEntry, now: int) -> str:
    """'+1.2ms pool.ntp.org 5m ago', or 'unsynced' when no NTP server answered."""
    if not agent.clock_source:
        return "unsynced"
    return (f"{agent.clock_offset_us / 1000:+.1f}ms {agent.clock_source} "
            f"{ago(agent.clock_measured_us, now)}")


@dataclass(frozen=True)
class PsListing(Listing):
    """A process listing, and the bundle version (SHA-256) each process's run uses."""

    versions: Mapping[tuple[str, str], bytes] = field(default_factory=dict)
    facts: Mapping[tuple[str, str], dict[str, str]] = field(default_factory=dict)  # health...


class PsCommand(ListCommand):
    """List processes, desired state beside actual state; with P, one in detail.

    DESIRED is what was asked for (the server keeps it through disconnects),
    STATE what the agent last reported; a '*' marks a process not (yet) where
    it was asked to be. VERSION is the bundle version (start of its SHA-256,
    as `bundles` shows it) the process's current or last run uses: after an
    upload, processes already running keep theirs until they are restarted.
    '-' when unknown (an agent of an older release cannot tell). HEALTH is
    starting, healthy or unhealthy for a process started with --check, '-'
    without one.

    `ps AGENT P` shows one process: state, pid, version, restarts, every
    option it was started with, and what its agent reports of it: health and
    the last check's words, ready, oom-kills (ends by its --memory limit); with
    a selector for AGENT, P on each agent it matches that has it. Environment
    values are hidden (only their keys show) unless --show-env is given.

    Examples:
      ps
      ps node-1
      ps node-1 web --show-env
    """

    name = "ps"
    usage = "ps [AGENT [P [--show-env]]]"
    arguments = ("agent", "process")
    request_type = ListProcesses
    reply_type = ProcessList
    reply_field = "processes"

    def add_arguments(self, parser: CommandParser) -> None:
        super().add_arguments(parser)
        parser.add_argument("process", nargs="?")
        parser.add_argument("--show-env", action="store_true")

    def parse(self, argv: Sequence[str]) -> Any:
        args: argparse.Namespace = self.parser.parse(argv)
        if args.process is not None:
            return detail_request(args.agent, args.process, args.show_env)
        if args.show_env:
            raise UsageError("--show-env goes with one process: ps AGENT P --show-env",
                             self.usage)
        return self.request_type(pattern=args.agent)

    async def execute(self, ctx: Context, parsed: Any) -> Any:
        if isinstance(parsed, QueryProcess):
            return await fetch_detail(ctx, parsed)
        if isinstance(parsed, DetailFor):
            return await fetch_details(ctx, parsed)
        listing = await super().execute(ctx, parsed)
        versions: dict[tuple[str, str], bytes] = {}
        # Asked second: the server answers from what the process listing just refreshed.
        for frame in await ctx.require_client().request(ListRunVersions(pattern=parsed.pattern)):
            if isinstance(frame.body, RunVersions):
                versions.update({(r.agent, r.process): r.sha256 for r in frame.body.runs})
        facts: dict[tuple[str, str], dict[str, str]] = {}
        for frame in await ctx.require_client().request(ListProcessFacts(pattern=parsed.pattern)):
            if isinstance(frame.body, ProcessFacts):
                facts.update({(f.agent, f.process): {kv.key: kv.value for kv in f.facts}
                              for f in frame.body.processes})
        return PsListing(listing.entries, listing.now_us, versions, facts)

    def render(self, result: Any, json: bool) -> str:
        if isinstance(result, (ProcessDetail, tuple)):
            return render_detail(result, json)
        if not json:
            return super().render(result, json)
        versions, facts = _versions_of(result), _facts_of(result)
        return dumps({"processes": [
            {**to_json(p), "bundle_sha256": versions[(p.agent, p.name)].hex()
             if (p.agent, p.name) in versions else None,
             "facts": facts.get((p.agent, p.name), {})}
            for p in result.entries]})

    def table(self, result: Listing) -> str:
        versions, facts = _versions_of(result), _facts_of(result)
        rows = [_process_row(p, result.now_us, versions.get((p.agent, p.name)),
                             facts.get((p.agent, p.name), {}))
                for p in result.entries]
        return table(("AGENT", "PROCESS", "BUNDLE", "VERSION", "DESIRED", "STATE", "HEALTH",
                      "PID", "UPTIME", "RESTARTS", "LIVENESS", "EXIT", "STATUS"), rows,
                     right=(7, 9))


def _versions_of(result: Listing) -> Mapping[tuple[str, str], bytes]:
    return result.versions if isinstance(result, PsListing) else {}


def _facts_of(result: Listing) -> Mapping[tuple[str, str], dict[str, str]]:
    return result.facts if isinstance(result, PsListing) else {}


def _process_row(p: ProcessEntry, now: int, version: bytes | None,
                 facts: Mapping[str, str]) -> tuple[object, ...]:
    state = enum_word(p.state) + ("" if _where_asked(p) else "*")
    running = p.state in LIVE_STATES and p.started_us > 0
    shown = version.hex()[:SHA_SHOWN] if version else "-"
    health = facts.get("health", "-") if running else "-"
    return (p.agent, p.name, p.bundle, shown, enum_word(p.desired), state, health,
            p.pid or "-",
            human_duration((now - p.started_us) / 1e6) if running else "-", p.restarts,
            ago(p.last_liveness_us, now) if p.last_liveness_us else "-", exit_text(p),
            p.status or "")


def _where_asked(p: ProcessEntry) -> bool:
    # desired and actual use different enums: compare by name (RUNNING, STOPPED, EXITED)
    if p.desired.name == "EXITED":
        return p.state in (ProcessState.EXITED, ProcessState.FAILED, ProcessState.NONE)
    return p.state.name == p.desired.name


def exit_text(p: ProcessEntry) -> str:
    if p.exit_signal:
        return signal_word(p.exit_signal)
    if p.exit_code >= 0:
        return f"code {p.exit_code}"
    return "-"




class BundlesCommand(ListCommand):
    """List bundles on agents: name, SHA-256, kind, size, when stored.

    STORED says 'pending' for a bundle the server holds but the agent has not
    stored yet (it was offline, or the transfer is still running). With
    --versions, the versions each online agent keeps of each bundle (the
    current one and the newest 3 it replaced), which `rollback` goes back to.

    Examples:
      bundles
      bundles node-*
      bundles node-1 --versions
    """

    name = "bundles"
    usage = "bundles [AGENT] [--versions]"
    request_type = ListBundles
    reply_type = BundleList
    reply_field = "bundles"

    def add_arguments(self, parser: CommandParser) -> None:
        super().add_arguments(parser)
        parser.add_argument("--versions", action="store_true")

    def parse(self, argv: Sequence[str]) -> Any:
        args: argparse.Namespace = self.parser.parse(argv)
        if args.versions:
            return ListBundleVersions(target=args.agent or "all", name="")
        return self.request_type(pattern=args.agent)

    async def execute(self, ctx: Context, parsed: Any) -> Listing:
        if not isinstance(parsed, ListBundleVersions):
            return await super().execute(ctx, parsed)
        entries: list[BundleVersion] = []
        for frame in await ctx.require_client().request(parsed):
            if isinstance(frame.body, BundleVersions):
                entries.extend(frame.body.versions)
        return Listing(tuple(entries), now_us())

    def render(self, result: Listing, json: bool) -> str:
        if not result.entries or not isinstance(result.entries[0], BundleVersion):
            return super().render(result, json)
        if json:
            return dumps({"versions": list(result.entries)})
        rows = [(v.agent, v.name, v.sha256.hex()[:SHA_SHOWN], enum_word(v.kind),
                 human_size(v.size), ago(v.stored_us, result.now_us),
                 "current" if v.current else "") for v in result.entries]
        return table(("AGENT", "BUNDLE", "SHA256", "KIND", "SIZE", "STORED", ""), rows,
                     right=(4,))

    def table(self, result: Listing) -> str:
        rows = [_bundle_row(b, result.now_us) for b in result.entries]
        return table(("AGENT", "BUNDLE", "SHA256", "KIND", "SIZE", "STORED"), rows, right=(4,))


def _bundle_row(b: BundleEntry, now: int) -> tuple[object, ...]:
    return (b.agent, b.name, b.sha256.hex()[:SHA_SHOWN], enum_word(b.kind), human_size(b.size),
            ago(b.stored_us, now) if b.stored_us else "pending")
