"""The HTTP listener on a real socket (127.0.0.1), inside a trio nursery like the server's.

A real Controller over a real model; the requests are made by urllib from a thread.
"""
from __future__ import annotations

import urllib.error
import urllib.request

import trio

from lotc.net.address import Address
from lotc.net.transport import open_listeners
from lotc.server.controller import Controller
from lotc.server.fleet_view import AgentView, ProcessView
from lotc.server.http_server import serve_http
from tests.server_helpers import (  # noqa: F401  (fixtures)
    ctl_fixture,
    model_fixture,
    wall_fixture,
)


def status_of(url: str, method: str = "GET") -> int:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method=method),
                                    timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


async def test_a_failing_scrape_is_a_500_and_the_listener_carries_on(ctl: Controller) -> None:
    ctl.metrics.render_interval_s = 0.0
    listeners = await open_listeners([Address("127.0.0.1", 0)])
    port = listeners[0].socket.getsockname()[1]  # type: ignore[attr-defined]
    url = f"http://127.0.0.1:{port}"
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            await nursery.start(serve_http, ctl, listeners)
            assert await trio.to_thread.run_sync(status_of, f"{url}/metrics") == 200
            assert await trio.to_thread.run_sync(status_of, f"{url}/") == 404
            assert await trio.to_thread.run_sync(status_of, f"{url}/metrics", "DELETE") == 405
            # A state no table knows (a bug, not an input): that scrape fails alone.
            bad = ProcessView(state=99)  # type: ignore[arg-type]
            ctl.fleet.agents["odd"] = AgentView(processes={"p": bad})
            assert await trio.to_thread.run_sync(status_of, f"{url}/metrics") == 500
            del ctl.fleet.agents["odd"]
            assert await trio.to_thread.run_sync(status_of, f"{url}/metrics") == 200
            nursery.cancel_scope.cancel()  # and it stops when the server does
