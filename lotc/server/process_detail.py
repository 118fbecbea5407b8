"""`ps AGENT P`: one process in detail, as label/text rows (QUERY_PROCESS, PROCESS_DETAIL).

The start options are rendered from the records themselves, never from a list
kept here: every field of the spec record in turn, then every key of its
options record (lotc.options: log-size, user, nofile... and whatever rows are
added later), so a new option shows up without touching this module.
Last come the facts the agent reported at the refresh (PROCESS_FACTS: health, ready,
oom-kills), as it sent them. Environment values may be secrets: only their keys are shown unless the
admin asks for them (`--show-env`). The variables of an --env-file are read
by the agent and never reach the server: the row names the file.
"""
from __future__ import annotations

import dataclasses
import shlex
from enum import Enum

from lotc.errors import UnknownProcess
from lotc.names import validate_name
from lotc.server import queries
from lotc.server.command_context import CommandContext
from lotc.server.records import ProcessSpecRecord
from protocol.messages import KeyValue, ProcessDetail, ProcessEntry, QueryProcess

__all__ = ["process_detail"]

HIDDEN = "(hidden: ps AGENT P --show-env)"
SHA_SHOWN = 12
# Fields of the spec record that are not start options: shown above, or the model's own.
_NOT_OPTIONS = frozenset({"agent", "name", "desired", "revision", "updated_us", "env",
                          "options"})


def _text(value: object) -> str:
    if isinstance(value, Enum):
        return value.name.lower().replace("_", "-")
    if isinstance(value, tuple):
        return shlex.join(str(v) for v in value)
    return str(value)


def _run_rows(entry: ProcessEntry, version: bytes | None) -> list[tuple[str, str]]:
    return [
        ("state", _text(entry.state)), ("desired", _text(entry.desired)),
        ("pid", str(entry.pid) if entry.pid else "-"),
        ("version", version.hex()[:SHA_SHOWN] if version else "-"),
        ("restarts", str(entry.restarts)),
        ("exit", "-" if entry.exit_code < 0 and not entry.exit_signal else
         f"signal {entry.exit_signal}" if entry.exit_signal else f"code {entry.exit_code}"),
        ("status", entry.status or "-"),
    ]


def option_rows(spec: ProcessSpecRecord, show_env: bool) -> list[tuple[str, str]]:
    """Every start option of `spec`, generically: its fields, env keys, options record."""
    rows = [(f.name, _text(getattr(spec, f.name))) for f in dataclasses.fields(spec)
            if f.name not in _NOT_OPTIONS]
    rows += [(f"env {key}", value if show_env else HIDDEN) for key, value in spec.env]
    rows += [(key, value) for key, value in spec.options]
    return rows


async def process_detail(ctl: CommandContext, msg: QueryProcess) -> ProcessDetail:
    validate_name("agent", msg.agent)
    validate_name("process", msg.name)
    entries = await queries.processes(ctl, msg.agent)  # refreshes from the agent if online
    entry = next((e for e in entries if e.agent == msg.agent and e.name == msg.name), None)
    spec = ctl.store.find_process(msg.agent, msg.name)
    if entry is None:
        raise UnknownProcess(f"no process {msg.name!r} on {msg.agent}")
    versions = {r.process: r.sha256 for r in queries.run_versions(ctl, msg.agent)
                if r.agent == msg.agent}
    rows = _run_rows(entry, versions.get(msg.name))
    facts = {(f.agent, f.process): f.facts for f in queries.process_facts(ctl, msg.agent)}
    rows += [(fact.key, fact.value) for fact in facts.get((msg.agent, msg.name), ())]
    if spec is not None:
        rows += option_rows(spec, msg.show_env)
    return ProcessDetail(agent=msg.agent, name=msg.name,
                         fields=tuple(KeyValue(key=k, value=v) for k, v in rows))
