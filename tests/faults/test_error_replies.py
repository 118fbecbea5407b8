"""Issue 14 item 17: our encoding failures are ours, not the client's.

A PROC_KILL naming a 65,500-byte signal is a valid frame (the name fits its
16-bit length prefix), so the server must answer it with a plain error and
keep the connection. It used to quote the name in its error reply, which was
then too long to encode: the EncodeError escaped as a MALFORMED_BODY protocol
error and the server closed the console, blaming it for its own failure.
Every error reply is now built by one helper that truncates.
"""
from __future__ import annotations

import trio

from lotc.net.address import Address
from lotc.net.auth import client_handshake
from lotc.net.transport import connect
from protocol.enums import Role
from protocol.errors import ErrorCode
from protocol.messages import AgentList, Error, ListAgents, ProcKill, Results
from protocol.spec import DEFAULT_MAX_BODY
from tests.cluster import Cluster

DEADLINE_S = 15.0
HUGE_SIGNAL = "X" * 65_500
MAX_ERROR_BYTES = 1000


async def kill_with_huge_signal(cluster: Cluster) -> list[object]:
    framed = await connect(Address("127.0.0.1", cluster.admin_port),
                           max_body=DEFAULT_MAX_BODY, send_timeout=DEADLINE_S)
    try:
        await client_handshake(framed, role=Role.ADMIN, name="admin", token=cluster.admin_token)
        await framed.send(ProcKill(target="n1", name="p", signal=HUGE_SIGNAL, grace_ms=0), 7)
        await framed.send(ListAgents(pattern=""), 8)  # the connection is still ours
        replies: list[object] = []
        with trio.fail_after(DEADLINE_S):
            while len(replies) < 2:
                frame = await framed.receive()
                if frame.request_id in (7, 8):
                    replies.append(frame.body)
        return replies
    finally:
        await framed.aclose()


def test_an_error_about_a_huge_value_is_truncated_and_the_console_stays(cluster: Cluster) -> None:
    cluster.start_server()
    cluster.token("agent", "n1")  # a known agent, offline
    refusal, listing = trio.run(kill_with_huge_signal, cluster)
    if isinstance(refusal, Results):  # refused per agent
        (refusal,) = [r for r in refusal.results if r.code != ErrorCode.OK]
    assert isinstance(refusal, Error) or hasattr(refusal, "code"), refusal
    assert refusal.code == ErrorCode.INVALID_REQUEST, refusal
    assert "signal" in refusal.message and "cut" in refusal.message, refusal.message[:200]
    assert len(refusal.message.encode()) <= MAX_ERROR_BYTES
    assert isinstance(listing, AgentList), listing
    assert "MALFORMED" not in cluster.server_log()
    assert cluster.server is not None and cluster.server.poll() is None
