"""The HTTP listener (`lotc server --http-listen`): /metrics, served by hypercorn on trio.

The listening sockets are opened by app.py like the agent and console ones (so a
port in use is the same plain ListenFailed, before any database is made); hypercorn
gets duplicates of them as `fd://` binds and runs its trio worker inside the
server's nursery. Anything but GET /metrics is Starlette's 404 (405 for another
method on /metrics); a scrape that fails is a 500 and the server carries on.
Plain HTTP only: TLS (--tls-cert) covers the agent and console ports.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

import trio
from hypercorn.config import Config
from hypercorn.trio import serve
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

if TYPE_CHECKING:
    from lotc.server.controller import Controller

logger = logging.getLogger(__name__)

# An open request holds up shutdown this long at most (hypercorn's default is 3 s).
GRACEFUL_TIMEOUT_S = 0.5
HTTP_KEEP_ALIVE_S = 30.0  # Prometheus keeps its connection between scrapes


def make_app(ctl: Controller) -> Starlette:
    async def metrics(request: Request) -> Response:
        del request
        return Response(await ctl.metrics.render(ctl), media_type=CONTENT_TYPE_LATEST)

    return Starlette(routes=[Route("/metrics", metrics, methods=["GET"])])


async def serve_http(
    ctl: Controller, listeners: Sequence[trio.SocketListener],
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the app on `listeners` (already bound) until cancelled."""
    config = Config()
    duplicates = [os.dup(listener.socket.fileno()) for listener in listeners]
    config.bind = [f"fd://{fd}" for fd in duplicates]  # hypercorn owns (and closes) these
    config.accesslog = None
    config.errorlog = logger
    config.graceful_timeout = GRACEFUL_TIMEOUT_S
    config.keep_alive_timeout = HTTP_KEEP_ALIVE_S
    try:
        await serve(make_app(ctl), config, task_status=task_status)  # type: ignore[arg-type]
    finally:
        with trio.CancelScope(shield=True):
            for listener in listeners:
                await listener.aclose()
