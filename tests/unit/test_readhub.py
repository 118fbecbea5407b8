"""ReadHub: one task reads many real TCP connections on 127.0.0.1 for their owners.

Each test connects real sockets through a listener on loopback; the hub reads the
server side, a `quick` callback takes heartbeats, and the owner's `receive` sees the
other frames and every ending exactly as it would reading the socket itself.
"""
from __future__ import annotations

import array
import fcntl
import socket
import termios
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest
import trio
import trio.testing

from lotc.net.framed import FramedStream, PeerClosed
from lotc.net.readhub import ReadHub
from protocol.codec import Frame, encode
from protocol.errors import ErrorCode, ProtocolError
from protocol.messages import Heartbeat, Ok

pytestmark = pytest.mark.skipif(not ReadHub.available(), reason="ReadHub needs epoll (Linux)")

DEADLINE_S = 5.0


def unread_bytes(framed: FramedStream) -> int:
    """Bytes waiting in the kernel for `framed`'s socket (FIONREAD)."""
    assert framed.socket is not None
    count = array.array("i", [0])
    fcntl.ioctl(framed.socket.fileno(), termios.FIONREAD, count)
    return count[0]


def takes_heartbeats(seen: list[Frame]) -> Callable[[Frame], bool]:
    def quick(frame: Frame) -> bool:
        seen.append(frame)
        return isinstance(frame.body, Heartbeat)
    return quick


async def tcp_pair() -> tuple[FramedStream, FramedStream]:
    """(server side, client side) of a real TCP connection on 127.0.0.1."""
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    with trio.fail_after(DEADLINE_S):
        client = await trio.open_tcp_stream("127.0.0.1", port)
        server = await listeners[0].accept()
    await listeners[0].aclose()
    return FramedStream(server, peer="agent"), FramedStream(client, peer="server")


@asynccontextmanager
async def running_hub() -> AsyncIterator[tuple[ReadHub, trio.Nursery]]:
    hub = ReadHub()
    async with trio.open_nursery() as nursery:
        await nursery.start(hub.run)
        yield hub, nursery
        nursery.cancel_scope.cancel()


async def wait_for(predicate: Callable[[], bool]) -> None:
    with trio.fail_after(DEADLINE_S):
        while not predicate():
            await trio.sleep(0.005)


async def test_heartbeats_stay_in_the_hub_and_other_frames_reach_the_owner_in_order() -> None:
    seen: list[Frame] = []
    async with running_hub() as (hub, _):
        server, client = await tcp_pair()
        assert hub.attach(server, takes_heartbeats(seen))
        stream = b"".join(encode(Heartbeat(seq=i)) if i % 3 else encode(Ok(message=str(i)), i)
                          for i in range(1, 31))
        for i in range(0, len(stream), 7):  # frames cut anywhere
            await client.send_bytes(stream[i:i + 7])
        with trio.fail_after(DEADLINE_S):
            got = [await server.receive() for _ in range(10)]
        assert [f.body.message for f in got] == [str(i) for i in range(3, 31, 3)]
        await wait_for(lambda: len(seen) == 30)
        assert [f.body.seq for f in seen if isinstance(f.body, Heartbeat)] == [
            i for i in range(1, 31) if i % 3]
        assert server.bytes_received == len(stream)
        await server.aclose()
        await client.aclose()
        assert len(hub) == 0


async def test_peer_close_arrives_after_the_frames_before_it() -> None:
    async with running_hub() as (hub, _):
        server, client = await tcp_pair()
        hub.attach(server, takes_heartbeats([]))
        await client.send(Ok(message="last words"))
        await client.aclose()
        with trio.fail_after(DEADLINE_S):
            assert (await server.receive()).body == Ok(message="last words")
            with pytest.raises(PeerClosed):
                await server.receive()
        assert len(hub) == 0
        await server.aclose()


async def test_garbage_ends_only_that_connection_with_a_protocol_error() -> None:
    async with running_hub() as (hub, _):
        bad_server, bad_client = await tcp_pair()
        good_server, good_client = await tcp_pair()
        hub.attach(bad_server, takes_heartbeats([]))
        hub.attach(good_server, takes_heartbeats([]))
        await bad_client.send_bytes(b"GET / HTTP/1.1\r\n\r\n")
        with trio.fail_after(DEADLINE_S), pytest.raises(ProtocolError) as caught:
            await bad_server.receive()
        assert caught.value.code is ErrorCode.BAD_MAGIC
        await good_client.send(Ok(message="still here"))
        with trio.fail_after(DEADLINE_S):
            assert (await good_server.receive()).body == Ok(message="still here")
        assert len(hub) == 1
        for framed in (bad_server, bad_client, good_server, good_client):
            await framed.aclose()


async def test_closing_from_another_task_wakes_the_parked_owner() -> None:
    async with running_hub() as (hub, nursery):
        server, client = await tcp_pair()
        hub.attach(server, takes_heartbeats([]))
        ended: list[BaseException] = []

        async def owner() -> None:
            try:
                await server.receive()
            except trio.ClosedResourceError as exc:
                ended.append(exc)

        nursery.start_soon(owner)
        await trio.testing.wait_all_tasks_blocked()
        await server.aclose()  # as the verdict loop closes a silent agent's connection
        await wait_for(lambda: bool(ended))
        assert len(hub) == 0
        await client.aclose()


async def test_a_socket_number_reused_after_a_close_reads_the_new_connection() -> None:
    async with running_hub() as (hub, _):
        first, first_client = await tcp_pair()
        hub.attach(first, takes_heartbeats([]))
        await first.aclose()
        second, second_client = await tcp_pair()
        assert hub.attach(second, takes_heartbeats([]))
        await second_client.send(Ok(message="new"))
        with trio.fail_after(DEADLINE_S):
            assert (await second.receive()).body == Ok(message="new")
        for framed in (first_client, second, second_client):
            await framed.aclose()


async def test_an_owner_that_does_not_read_pushes_back_on_its_peer() -> None:
    """While queued frames wait for the owner, the hub reads no more of that socket."""
    async with running_hub() as (hub, _):
        server, client = await tcp_pair()
        hub.attach(server, takes_heartbeats([]))
        await client.send(Ok(message="first"))
        await wait_for(lambda: server.bytes_received > 0)
        await client.send(Ok(message="second"))
        await wait_for(lambda: unread_bytes(server) == len(encode(Ok(message="second"))))
        await trio.testing.wait_all_tasks_blocked()  # the hub has had its chance to read it
        assert server.bytes_received == len(encode(Ok(message="first")))
        with trio.fail_after(DEADLINE_S):
            assert (await server.receive()).body == Ok(message="first")
            assert (await server.receive()).body == Ok(message="second")
        await server.aclose()
        await client.aclose()


async def test_stopping_the_hub_tells_every_owner_its_stream_closed() -> None:
    server, client = await tcp_pair()
    async with trio.open_nursery() as outer:
        hub = ReadHub()
        hub_scope = trio.CancelScope()

        async def run_hub(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
            with hub_scope:
                await hub.run(task_status=task_status)

        await outer.start(run_hub)
        hub.attach(server, takes_heartbeats([]))
        hub_scope.cancel()
        with trio.fail_after(DEADLINE_S), pytest.raises(trio.ClosedResourceError):
            await server.receive()
    await server.aclose()
    await client.aclose()


async def test_tls_and_test_streams_are_not_attached() -> None:
    a, _ = trio.testing.memory_stream_pair()
    hub = ReadHub()
    assert not hub.attach(FramedStream(a), takes_heartbeats([]))  # type: ignore[arg-type]


async def test_send_now_finishes_a_partly_written_frame_before_the_next() -> None:
    server, client = await tcp_pair()
    assert server.socket is not None
    server.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    big = encode(Ok(message="x" * 60_000))
    # The peer reads nothing yet: the kernel's buffers fill and a write is cut short.
    sends = 0
    while not server.unsent and sends < 1000:
        assert server.send_now(big) or server.unsent
        sends += 1
    assert server.unsent, "the socket buffers never filled"
    # Whether or not the kernel has room by now, the tail goes before the ping.
    pinged = server.send_now(encode(Ok(message="ping")))

    async def read_all(count: int) -> list[Frame]:
        return [await client.receive() for _ in range(count)]

    async with trio.open_nursery() as nursery:
        nursery.start_soon(server.send, Ok(message="after"))
        with trio.fail_after(DEADLINE_S):
            frames = await read_all(sends + pinged + 1)
    assert [f.body.message for f in frames] == (
        ["x" * 60_000] * sends + ["ping"] * pinged + ["after"])
    await server.aclose()
    await client.aclose()
