"""`ps AGENT P [--show-env]`: one process in detail (QUERY_PROCESS -> PROCESS_DETAIL).

The server sends label/text rows in display order (lotc/server/process_detail.py
renders every start option from the process's records), so a new option needs
nothing here. QUERY_PROCESS names one agent; for a selector (`ps role=web web`)
the console asks which agents it matches (LIST_AGENTS, the server's selector
rules) and shows P on each one that has it.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from admin_console.commands.base import Context
from admin_console.errors import UsageError
from admin_console.parsing import check_name
from admin_console.render import dumps
from lotc.errors import InvalidRequest, UnknownProcess
from lotc.names import validate_name
from protocol.messages import AgentList, KeyValue, ListAgents, ProcessDetail, QueryProcess

__all__ = ["DetailFor", "detail_request", "fetch_detail", "fetch_details", "render_detail",
           "render_rows"]


@dataclass(frozen=True)
class DetailFor:
    """`ps SELECTOR P`: P in detail on every agent the selector matches."""

    selector: str
    name: str
    show_env: bool


def detail_request(agent: str, process: str, show_env: bool) -> QueryProcess | DetailFor:
    name = check_name("process", process)
    try:
        validate_name("agent", agent)
    except InvalidRequest:
        return DetailFor(agent, name, show_env)  # a selector (checked by the parser)
    return QueryProcess(agent=agent, name=name, show_env=show_env)


async def fetch_detail(ctx: Context, request: QueryProcess) -> ProcessDetail:
    for frame in await ctx.require_client().request(request):
        if isinstance(frame.body, ProcessDetail):
            return frame.body
    raise UsageError("the server does not know `ps AGENT P` (it is older than this console)")


async def fetch_details(ctx: Context, request: DetailFor) -> tuple[ProcessDetail, ...]:
    """P on each matching agent that has it; UnknownProcess, naming both, if none has."""
    frames = await ctx.require_client().request(ListAgents(pattern=request.selector))
    found = []
    for agent in (a.name for f in frames if isinstance(f.body, AgentList) for a in f.body.agents):
        try:
            found.append(await fetch_detail(
                ctx, QueryProcess(agent=agent, name=request.name, show_env=request.show_env)))
        except UnknownProcess:
            continue  # on the agents that have it
    if not found:
        raise UnknownProcess(f"no process {request.name!r} on the agents {request.selector!r} "
                             f"matches")
    return tuple(found)


def _identity(detail: ProcessDetail) -> dict[str, str]:
    return {"agent": detail.agent, "name": detail.name}


def render_detail(detail: ProcessDetail | tuple[ProcessDetail, ...], json: bool) -> str:
    """One process (`ps AGENT P`), or a section per agent (`ps SELECTOR P`, JSON: a list)."""
    if isinstance(detail, tuple):
        if json:
            return dumps({"processes": [_fields_json(d.fields, _identity(d)) for d in detail]})
        return "\n\n".join(render_detail(d, False) for d in detail)
    return render_rows(f"{detail.agent}/{detail.name}", detail.fields, json, _identity(detail))


def _fields_json(fields: Sequence[KeyValue], identity: dict[str, str]) -> dict[str, Any]:
    return {**identity, "fields": {kv.key: kv.value for kv in fields}}


def render_rows(title: str, fields: Sequence[KeyValue], json: bool,
                identity: dict[str, str]) -> str:
    """Label/text rows under a title, aligned; with --json, {identity..., fields}."""
    if json:
        return dumps(_fields_json(fields, identity))
    width = max((len(kv.key) for kv in fields), default=0) + 1
    lines = [title]
    lines += [f"  {kv.key + ':':<{width}} {kv.value}" for kv in fields]
    return "\n".join(lines)
