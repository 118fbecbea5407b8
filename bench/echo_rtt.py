"""Reference loopback round trips for bench.server_load: what the machine gives before
LOTC adds anything, a blocking-socket echo and a trio echo of a heartbeat-sized message."""
from __future__ import annotations

import socket
import statistics
import threading
import time
from functools import partial

import trio

ECHO_ROUND_TRIPS = 2000
ECHO_MESSAGE = b"x" * 28  # a heartbeat frame's size
ECHO_TIMEOUT_S = 30.0


def blocking_echo_rtt_us(n: int = ECHO_ROUND_TRIPS) -> float:
    """Median round trip, in microseconds, of a blocking client and a thread echoing."""
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            while data := conn.recv(4096):
                conn.sendall(data)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    samples = []
    with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for _ in range(n):
            began = time.perf_counter()
            client.sendall(ECHO_MESSAGE)
            got = 0
            while got < len(ECHO_MESSAGE):
                got += len(client.recv(4096))
            samples.append(time.perf_counter() - began)
    thread.join(timeout=5)
    server.close()
    return statistics.median(samples) * 1e6


def trio_echo_rtt_us(n: int = ECHO_ROUND_TRIPS) -> float:
    """Median round trip, in microseconds, of a trio client and a trio echo server."""
    async def run() -> float:
        async def echo(stream: trio.SocketStream) -> None:
            async with stream:
                async for data in stream:
                    await stream.send_all(data)

        samples = []
        with trio.fail_after(ECHO_TIMEOUT_S):
            async with trio.open_nursery() as nursery:
                listeners = await nursery.start(partial(trio.serve_tcp, echo, 0, host="127.0.0.1"))
                port = listeners[0].socket.getsockname()[1]
                async with await trio.open_tcp_stream("127.0.0.1", port) as client:
                    for _ in range(n):
                        began = time.perf_counter()
                        await client.send_all(ECHO_MESSAGE)
                        got = 0
                        while got < len(ECHO_MESSAGE):
                            got += len(await client.receive_some(4096))
                        samples.append(time.perf_counter() - began)
                nursery.cancel_scope.cancel()
        return statistics.median(samples) * 1e6

    return trio.run(run)
