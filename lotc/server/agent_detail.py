"""`agent NAME`: one agent in detail, as label/text rows (QUERY_AGENT, AGENT_DETAIL).

The rows an `agents` line has, in words, then what the agent announced when it
connected: its capabilities and, in words, what its node's cgroups give it
(lotc.containment). Those are known only while it is online: an offline
agent's row says so rather than show what it had last time.
"""
from __future__ import annotations

from lotc.containment import describe
from lotc.errors import UnknownAgent
from lotc.names import validate_name
from lotc.parse.crontimes import format_us
from lotc.selectors import effective_labels
from lotc.server import queries
from lotc.server.command_context import CommandContext
from protocol.messages import AgentDetail, KeyValue, QueryAgent

__all__ = ["agent_detail"]


def _when(time_us: int) -> str:
    return format_us(time_us) if time_us else "-"


def _labels_text(ctl: CommandContext, agent: str) -> str:
    """In effect, then where from: 'role=web zone=b (console: zone=b; agent: role=web zone=a)'."""
    record = ctl.store.labels(agent).get(agent)
    if record is None:
        return "-"
    def pairs(labels: dict[str, str]) -> str:
        return " ".join(f"{k}={v}" for k, v in sorted(labels.items()))
    sources = [f"{who}: {pairs(labels)}" for who, labels in
               (("console", record.console), ("agent", record.announced)) if labels]
    return f"{pairs(effective_labels(record.announced, record.console))} ({'; '.join(sources)})"


async def agent_detail(ctl: CommandContext, msg: QueryAgent) -> AgentDetail:
    validate_name("agent", msg.agent)
    entries = [e for e in queries.agents(ctl, msg.agent) if e.name == msg.agent]
    if not entries:
        raise UnknownAgent(f"unknown agent {msg.agent!r}")
    entry = entries[0]
    clock = (f"{entry.clock_offset_us / 1000:+.1f} ms against {entry.clock_source}, "
             f"measured {_when(entry.clock_measured_us)}" if entry.clock_source else "unsynced")
    rows = [
        ("state", "online" if entry.online else "offline"),
        ("address", entry.address or "-"), ("hostname", entry.hostname or "-"),
        ("version", entry.version or "-"), ("connected", _when(entry.connected_us)),
        ("last seen", _when(entry.last_seen_us)), ("clock", clock),
        ("running", str(entry.processes)), ("labels", _labels_text(ctl, msg.agent)),
    ]
    session = ctl.session(msg.agent)
    if session is None:
        rows += [("cgroups", "unknown while offline"), ("capabilities", "unknown while offline")]
    else:
        announced = session.hello.capabilities
        rows += [("cgroups", describe(announced)),
                 ("capabilities", ", ".join(announced) or "-")]
    return AgentDetail(agent=msg.agent, fields=tuple(KeyValue(key=k, value=v) for k, v in rows))
