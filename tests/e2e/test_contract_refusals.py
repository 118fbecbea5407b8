"""The CONTRACT enforced on a real server (issue 15 item 1).

A raw socket client (the standard library's blocking `socket`, speaking the frames by
hand) logs in, or not, on each port of a real `lotc server` and sends a message only
the server may send. It must get ERROR UNEXPECTED_MESSAGE and a closed connection,
before authenticating and after; meanwhile a real agent stays online and the next
console is served.
"""
from __future__ import annotations

import socket

import pytest

from lotc.net.auth import compute_mac, token_key
from protocol.codec import Frame, FrameDecoder, encode
from protocol.enums import Role
from protocol.errors import ErrorCode
from protocol.messages import AgentList, Auth, Challenge, Error, Hello, Message, Welcome
from tests.cluster import Cluster

pytestmark = pytest.mark.timeout(120)
READ_TIMEOUT_S = 10.0  # the server answers a refused frame at once; this is a guard


class RawClient:
    """One TCP connection, frames encoded and decoded by hand; no trio, no FramedStream."""

    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        self.sock = socket.create_connection((host, port), timeout=READ_TIMEOUT_S)
        self.decoder = FrameDecoder()
        self.frames: list[Frame] = []

    def send(self, body: Message, request_id: int = 0) -> None:
        self.sock.sendall(encode(body, request_id))

    def next_frame(self) -> Frame | None:
        """The next frame, or None when the server closed the connection."""
        while not self.frames:
            data = self.sock.recv(65536)
            if not data:
                return None
            self.frames += self.decoder.feed(data)
        return self.frames.pop(0)

    def until_closed(self) -> list[Frame]:
        frames = []
        while (frame := self.next_frame()) is not None:
            frames.append(frame)
        return frames

    def log_in(self, role: Role, name: str, token: str) -> None:
        self.send(Hello(role=role, name=name, software="raw"), 1)
        challenge = self.next_frame()
        assert challenge is not None and isinstance(challenge.body, Challenge), challenge
        self.send(Auth(mac=compute_mac(token_key(token), challenge.body.nonce, role, name)), 2)
        welcome = self.next_frame()
        assert welcome is not None and isinstance(welcome.body, Welcome), welcome

    def close(self) -> None:
        self.sock.close()


def _refused(client: RawClient, body: Message) -> Error:
    """Send a frame the contract refuses; returns the ERROR the server closed with."""
    client.send(body, 7)
    frames = client.until_closed()
    errors = [f.body for f in frames if isinstance(f.body, Error)]
    assert len(errors) == 1, frames
    assert errors[0].code == ErrorCode.UNEXPECTED_MESSAGE, errors[0]
    return errors[0]


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_server_only_messages_are_refused_on_both_ports(cluster: Cluster, host: str) -> None:
    cluster.start_server()
    cluster.start_agent("n1")
    cluster.wait_online("n1")
    agent_token = cluster.token("agent", "raw-agent")
    ports = {Role.AGENT: (cluster.agent_port, "raw-agent", agent_token, "an agent"),
             Role.ADMIN: (cluster.admin_port, "admin", cluster.admin_token, "a console")}
    for role, (port, name, token, who) in ports.items():
        # Before authenticating: the server's own handshake message, as a first frame.
        client = RawClient(port, host)
        try:
            error = _refused(client, Welcome(server="raw"))
            assert f"{who} may not send WELCOME during the handshake" in error.message
        finally:
            client.close()
        # After authenticating: a reply only the server sends (to consoles).
        client = RawClient(port, host)
        try:
            client.log_in(role, name, token)
            error = _refused(client, AgentList(agents=()))
            assert f"{who} may not send AGENT_LIST after WELCOME" in error.message
        finally:
            client.close()
        # The server stays up and serves the next client, and the real agent stays online.
        assert cluster.server is not None and cluster.server.poll() is None
        assert cluster.agents_view()["n1"]["online"]
    log = cluster.server_log()
    assert "may not send AGENT_LIST" in log and "Traceback" not in log
