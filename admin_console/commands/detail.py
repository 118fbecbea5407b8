"""`ps AGENT P [--show-env]`: one process in detail (QUERY_PROCESS -> PROCESS_DETAIL).

The server sends label/text rows in display order (lotc/server/process_detail.py
renders every start option from the process's records), so a new option needs
nothing here.
"""
from __future__ import annotations

from collections.abc import Sequence

from admin_console.commands.base import Context
from admin_console.errors import UsageError
from admin_console.parsing import check_name
from admin_console.render import dumps
from lotc.errors import InvalidRequest
from lotc.names import validate_name
from protocol.messages import KeyValue, ProcessDetail, QueryProcess

__all__ = ["detail_request", "fetch_detail", "render_detail", "render_rows"]


def detail_request(agent: str, process: str, show_env: bool) -> QueryProcess:
    try:
        validate_name("agent", agent)
    except InvalidRequest:
        raise UsageError(f"ps AGENT P: {agent!r} must name one agent, not a selector") from None
    return QueryProcess(agent=agent, name=check_name("process", process), show_env=show_env)


async def fetch_detail(ctx: Context, request: QueryProcess) -> ProcessDetail:
    for frame in await ctx.require_client().request(request):
        if isinstance(frame.body, ProcessDetail):
            return frame.body
    raise UsageError("the server does not know `ps AGENT P` (it is older than this console)")


def render_detail(detail: ProcessDetail, json: bool) -> str:
    return render_rows(f"{detail.agent}/{detail.name}", detail.fields, json,
                       {"agent": detail.agent, "name": detail.name})


def render_rows(title: str, fields: Sequence[KeyValue], json: bool,
                identity: dict[str, str]) -> str:
    """Label/text rows under a title, aligned; with --json, {identity..., fields}."""
    if json:
        return dumps({**identity, "fields": {kv.key: kv.value for kv in fields}})
    width = max((len(kv.key) for kv in fields), default=0) + 1
    lines = [title]
    lines += [f"  {kv.key + ':':<{width}} {kv.value}" for kv in fields]
    return "\n".join(lines)
