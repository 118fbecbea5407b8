"""`stats AGENT`: the node's latest figures, a CPU trend, and its processes."""
from __future__ import annotations

import argparse
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from admin_console.bounds import agent_selector, span
from admin_console.commands.base import Command, Context
from admin_console.parsing import CommandParser, parse_duration
from admin_console.render import ago, dumps, human_duration, human_size, table, to_json
from lotc.errors import InternalError
from lotc.selectors import parse_selector
from protocol.messages import DiskEntry, DiskUsage, NodeStats, QueryDisk, QueryStats, StatsHistory

DEFAULT_SINCE = "10m"


@dataclass(frozen=True)
class StatsArgs:
    agent: str
    since_s: float


@dataclass(frozen=True)
class StatsResult:
    histories: tuple[StatsHistory, ...]  # one per matching agent
    now_us: int
    several: bool  # AGENT was more than one name: JSON is a list even for one match
    disks: Mapping[str, DiskEntry] = field(default_factory=dict)  # by agent (QUERY_DISK)


class StatsCommand(Command):
    """Show AGENT's node statistics and its processes' CPU and memory.

    AGENT is a selector (see `help label`): a section per agent. The node
    figures are those of the latest report; disk figures are those `df` shows
    for the filesystem holding the agent's state dir, asked live: used, free
    (df's Avail: what non-root users may still write), total and Use% (used
    over used + free, rounded up, as df). An agent of an older release cannot
    tell free: its used and total come from the report. The trend line gives the minimum, average and maximum
    CPU over the window (--since, default 10m), and I/O rates are taken
    between the last two reports.

    Examples:
      stats node-1
      stats all --since 1h
      stats 'web-*'
    """

    name = "stats"
    usage = "stats AGENT [--since DURATION]"  # AGENT: a selector
    arguments = ("agent",)

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("agent", type=agent_selector)
        parser.add_argument("--since", type=span("--since"), default=parse_duration(DEFAULT_SINCE))

    def parse(self, argv: Sequence[str]) -> StatsArgs:
        args: argparse.Namespace = self.parser.parse(argv)
        return StatsArgs(args.agent, args.since)

    async def execute(self, ctx: Context, parsed: StatsArgs) -> StatsResult:
        now = time.time_ns() // 1000
        since_us = now - int(parsed.since_s * 1e6)
        frames = await ctx.require_client().request(
            QueryStats(agent=parsed.agent, since_us=since_us, limit=0))
        histories = tuple(frame.body for frame in frames)
        for history in histories:
            if not isinstance(history, StatsHistory):
                raise InternalError(f"the server answered {type(history).__name__} to stats")
        several = parse_selector(parsed.agent).single_name is None
        disks = {}
        for frame in await ctx.require_client().request(QueryDisk(pattern=parsed.agent)):
            if isinstance(frame.body, DiskUsage):
                disks.update({disk.agent: disk for disk in frame.body.disks})
        return StatsResult(histories, now, several, disks)  # type: ignore[arg-type]

    def render(self, result: StatsResult, json: bool) -> str:
        if json:
            documents = [{**to_json(history), "disk": disk_json(history, result.disks)}
                         for history in result.histories]
            return dumps({"stats": documents} if result.several else documents[0])
        return "\n\n".join(agent_section(history, result.now_us, result.disks.get(history.agent))
                           for history in result.histories)


def agent_section(history: StatsHistory, now_us: int, disk: DiskEntry | None = None) -> str:
    if not history.samples:
        return f"{history.agent}: no statistics in this window"
    latest = history.samples[-1]
    sections = [
        (f"{history.agent}  (latest report {ago(latest.time_us, now_us)}, "
         f"{len(history.samples)} in the window)"),
        node_table(latest.node, disk),
        rates_line(history),
        cpu_trend(history),
    ]
    if history.processes:
        sections.append(process_table(history, now_us))
    return "\n".join(section for section in sections if section)


def node_table(node: NodeStats, disk: DiskEntry | None = None) -> str:
    mem = f"{human_size(node.mem_used)} / {human_size(node.mem_total)}"
    rows = [
        ("cpu", f"{node.cpu_percent:.1f}%"),
        ("load", f"{node.load1:.2f} {node.load5:.2f} {node.load15:.2f}"),
        ("memory", f"{mem} ({_percent(node.mem_used, node.mem_total)})"),
        ("swap", human_size(node.swap_used)),
        *disk_rows(node, disk),
        ("uptime", human_duration(node.uptime_s)),
    ]
    return table(None, [(f"  {k}", v) for k, v in rows])


def use_percent(used: int, free: int) -> int:
    """df's Use%: used over what non-root users could have (used + free), rounded up."""
    whole = used + free
    return -(-100 * used // whole) if whole else 0


def _known(disk: DiskEntry | None) -> DiskEntry | None:
    return disk if disk is not None and not disk.unknown else None


def _unknown_reason(disk: DiskEntry | None) -> str:
    return disk.unknown if disk is not None else "not asked"


def disk_rows(node: NodeStats, disk: DiskEntry | None) -> list[tuple[str, str]]:
    known = _known(disk)
    if known is None:  # an older agent (or none answering): the report's used and total
        used, total = human_size(node.disk_used), human_size(node.disk_total)
        return [("disk", f"used {used}  total {total}  free: unknown ({_unknown_reason(disk)})")]
    used, free, total = human_size(known.used), human_size(known.avail), human_size(known.total)
    percent = use_percent(known.used, known.avail)
    inodes = (known.inodes_used, known.inodes_free, known.inodes_total)
    return [
        ("disk", f"used {used}  free {free}  total {total}  use {percent}%  (on {known.mount})"),
        ("inodes", "used {}  free {}  total {}".format(*inodes)),
    ]


def disk_json(history: StatsHistory, disks: Mapping[str, DiskEntry]) -> dict[str, Any]:
    """df's figures in bytes; free and the rest null when the agent could not tell."""
    known = _known(disks.get(history.agent))
    if known is not None:
        return {"path": known.path, "mount": known.mount, "used": known.used,
                "free": known.avail, "total": known.total,
                "use_percent": use_percent(known.used, known.avail),
                "inodes_used": known.inodes_used, "inodes_free": known.inodes_free,
                "inodes_total": known.inodes_total, "unknown": None}
    node = history.samples[-1].node if history.samples else None
    return {"path": None, "mount": None, "used": node.disk_used if node else None,
            "free": None, "total": node.disk_total if node else None, "use_percent": None,
            "inodes_used": None, "inodes_free": None, "inodes_total": None,
            "unknown": _unknown_reason(disks.get(history.agent))}


def _percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.0f}%" if whole else "-"


def rates_line(history: StatsHistory) -> str:
    """Disk and network throughput between the last two reports (counters are totals)."""
    if len(history.samples) < 2:
        return ""
    before, after = history.samples[-2], history.samples[-1]
    seconds = (after.time_us - before.time_us) / 1e6
    if seconds <= 0:
        return ""

    def rate(field: str) -> str:
        delta = getattr(after.node, field) - getattr(before.node, field)
        return f"{human_size(max(delta, 0) / seconds)}/s"

    return (f"  disk read {rate('disk_read_bytes')}, write {rate('disk_write_bytes')}; "
            f"net sent {rate('net_sent_bytes')}, received {rate('net_recv_bytes')}")


def cpu_trend(history: StatsHistory) -> str:
    values = [sample.node.cpu_percent for sample in history.samples]
    return (f"  cpu over the window: min {min(values):.1f}%  avg {sum(values) / len(values):.1f}%"
            f"  max {max(values):.1f}%")


def process_table(history: StatsHistory, now_us: int) -> str:
    rows = [
        (p.name, p.pid or "-", f"{p.cpu_percent:.1f}%", human_size(p.rss), p.threads,
         p.open_files, p.restarts, ago(p.last_liveness_us, now_us) if p.last_liveness_us else "-")
        for p in history.processes
    ]
    return table(("PROCESS", "PID", "CPU", "RSS", "THREADS", "FILES", "RESTARTS", "LIVENESS"),
                 rows, right=(1, 2, 3, 4, 5, 6))
