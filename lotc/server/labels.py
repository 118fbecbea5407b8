"""`label`, `unlabel` and the label listing: the console's side of agent labels.

Labels live on the server only (the agent never needs its console labels: they
select it, they do not change what it does), so these commands answer at once,
online agent or not, and one line per agent says what changed. A console label
wins over the agent's own `--label` for the same key until `unlabel` removes it;
then the agent's own value (if it has one) is back (lotc/selectors.py).
"""
from __future__ import annotations

import logging

from lotc.errors import Conflict, InvalidRequest
from lotc.selectors import MAX_LABELS, effective_labels, parse_labels, validate_label_key
from lotc.server.command_context import CommandContext
from lotc.server.fanout import fan_out
from lotc.server.records import LabelRecord
from protocol.messages import AgentResult, Label, LabelsEntry, LabelSet, LabelUnset

logger = logging.getLogger(__name__)


def _pairs(labels: dict[str, str]) -> str:
    return " ".join(f"{key}={value}" for key, value in sorted(labels.items()))


async def set_labels(ctl: CommandContext, msg: LabelSet) -> list[AgentResult]:
    if not msg.labels:
        raise InvalidRequest("no label given: write KEY=VALUE, for example role=web")
    wanted = parse_labels(f"{label.key}={label.value}" for label in msg.labels)
    targets = ctl.resolve_targets(msg.target)
    before = ctl.store.labels(targets)

    async def one(agent: str) -> str:
        record = before.get(agent, LabelRecord(agent))
        total = {**record.console, **wanted}
        if len(total) > MAX_LABELS:
            raise Conflict(f"{agent} would have {len(total)} console labels; "
                           f"the limit is {MAX_LABELS} (unlabel some first)")
        ctl.store.set_console_labels(agent, wanted)
        overridden = {k: v for k, v in record.announced.items() if k in wanted and wanted[k] != v}
        said = f"labels {_pairs(effective_labels(record.announced, total))}"
        if overridden:
            said += f" (overrides the agent's own {_pairs(overridden)})"
        return said

    return await fan_out(targets, one)


async def unset_labels(ctl: CommandContext, msg: LabelUnset) -> list[AgentResult]:
    if not msg.keys:
        raise InvalidRequest("no label key given: write unlabel AGENT KEY...")
    if len(msg.keys) > MAX_LABELS:  # more than an agent can have: bounds the work of one request
        raise InvalidRequest(f"{len(msg.keys)} keys given; an agent has at most {MAX_LABELS} "
                             f"console labels")
    keys = list(dict.fromkeys(validate_label_key(key) for key in msg.keys))
    targets = ctl.resolve_targets(msg.target)
    before = ctl.store.labels(targets)

    async def one(agent: str) -> str:
        record = before.get(agent, LabelRecord(agent))
        removed = ctl.store.unset_console_labels(agent, keys)
        console = {k: v for k, v in record.console.items() if k not in removed}
        now = effective_labels(record.announced, console)
        said = f"removed {' '.join(removed)}; " if removed else ""
        # A label only the agent's --label sets cannot be removed from here: say so
        # (as a failure) rather than answer "ok" while the label stays.
        kept = {k: record.announced[k] for k in keys
                if k in record.announced and k not in record.console}
        if kept:
            raise Conflict(f"{said}{_pairs(kept)} comes from the agent's own --label: restart "
                           f"the agent without it, or override it with label")
        absent = [k for k in keys if k not in removed]
        if absent:
            said += f"{' '.join(absent)} not set; "
        back = {k: record.announced[k] for k in removed if k in record.announced}
        if back:
            said += f"the agent's own {_pairs(back)} applies again; "
        return f"{said}labels {_pairs(now) or '(none)'}"

    return await fan_out(targets, one)


def label_entries(ctl: CommandContext, pattern: str) -> list[LabelsEntry]:
    """Every matching agent that has labels, by name (an agent with none is not listed)."""
    wanted = ctl.match_agents(pattern)
    records = ctl.store.labels(wanted)
    return [
        LabelsEntry(
            agent=name,
            announced=tuple(Label(key=k, value=v) for k, v in sorted(r.announced.items())),
            console=tuple(Label(key=k, value=v) for k, v in sorted(r.console.items())),
        )
        for name, r in sorted(records.items())
    ]
