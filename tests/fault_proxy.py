"""A TCP proxy for fault tests: put it between an agent and the server, then break the link.

    with FaultProxy(("127.0.0.1", server_port)) as proxy:
        start the agent with --server 127.0.0.1:{proxy.port}
        proxy.drop_downstream()   # server -> agent bytes are read and thrown away
        proxy.stall()             # nothing moves either way; both sockets stay open

Each fault applies to the connections open when it is called; connections
made afterwards pass normally, as after a real network blip: so a peer that
notices the broken link and reconnects gets a working one. `heal()` lets the
broken connections flow again. Nothing is closed by a fault: the peers must
notice silence on their own (that is what the tests prove). Plain threads
and blocking sockets, so the proxy works whatever the test's event loop.
"""
from __future__ import annotations

import select
import socket
import threading
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

POLL_S = 0.05  # how often a paused pump looks at its flags again
BUFFER = 64 * 1024


@dataclass
class _Link:
    """One proxied connection: the agent side and the server side."""

    client: socket.socket
    upstream: socket.socket
    drop_down: bool = False  # server -> client data discarded
    drop_up: bool = False  # client -> server data discarded
    stalled: bool = False  # neither side is read
    closed: threading.Event = field(default_factory=threading.Event)

    def close(self) -> None:
        self.closed.set()
        for sock in (self.client, self.upstream):
            try:
                sock.close()
            except OSError:
                pass


class FaultProxy:
    def __init__(self, target: tuple[str, int], host: str = "127.0.0.1") -> None:
        self.target = target
        self._listener = socket.create_server((host, 0))
        self._listener.settimeout(POLL_S)
        self.port: int = self._listener.getsockname()[1]
        self._links: list[_Link] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.accepted = 0
        self._threads = [threading.Thread(target=self._accept_loop, daemon=True)]
        self._threads[0].start()

    # ---------------------------------------------------------------- faults
    def drop_downstream(self) -> None:
        """Server -> agent bytes of the open connections vanish; agent -> server still flows."""
        for link in self._open():
            link.drop_down = True

    def drop_upstream(self) -> None:
        for link in self._open():
            link.drop_up = True

    def stall(self) -> None:
        """Open connections stop moving in both directions (no FIN, no RST: silence)."""
        for link in self._open():
            link.stalled = True

    def heal(self) -> None:
        for link in self._open():
            link.drop_down = link.drop_up = link.stalled = False

    def open_connections(self) -> int:
        return len(self._open())

    # ---------------------------------------------------------------- lifetime
    def close(self) -> None:
        self._stop.set()
        self._listener.close()
        with self._lock:
            links, self._links = self._links, []
        for link in links:
            link.close()
        for thread in self._threads:
            thread.join(timeout=2)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # ---------------------------------------------------------------- inside
    def _open(self) -> list[_Link]:
        with self._lock:
            self._links = [link for link in self._links if not link.closed.is_set()]
            return list(self._links)

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=2)
            except OSError:
                client.close()
                continue
            client.settimeout(None)
            upstream.settimeout(None)
            self.accepted += 1
            link = _Link(client, upstream)
            with self._lock:
                self._links.append(link)
            for args in ((link, client, upstream, False), (link, upstream, client, True)):
                thread = threading.Thread(target=self._pump, args=args, daemon=True)
                thread.start()
                self._threads.append(thread)

    def _pump(self, link: _Link, source: socket.socket, sink: socket.socket,
              downstream: bool) -> None:
        # Blocking sockets (sendall must wait for a slow reader, never time out) and
        # select() with a short timeout, so the pump sees its flags change.
        while not (self._stop.is_set() or link.closed.is_set()):
            if link.stalled:
                link.closed.wait(POLL_S)  # not reading: the sender's buffers fill up
                continue
            try:
                readable, _, _ = select.select([source], [], [], POLL_S)
                if not readable:
                    continue
                data = source.recv(BUFFER)
            except (OSError, ValueError):  # closed under us
                break
            if not data:
                break
            if link.drop_down if downstream else link.drop_up:
                continue
            try:
                sink.sendall(data)
            except OSError:
                break
        # A peer closed (or the proxy stops): pass the end on, as a router would.
        if not link.stalled:
            link.close()
