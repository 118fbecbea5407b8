"""sockio: one errno-to-stream-error rule for every path that reads or writes a socket.

Real TCP connections on 127.0.0.1, reset by their peer (SO_LINGER 0, so the kernel
sends RST); each path must end them as trio's SocketStream does: same class, same
message, so one `except` fits every reader and writer.
"""
from __future__ import annotations

import select
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import pytest
import trio

from lotc.net.framed import FramedStream
from lotc.net.readhub import ReadHub
from lotc.net.sockio import read_now, write_now
from protocol.codec import encode
from protocol.messages import Heartbeat, Ok

DEADLINE_S = 5.0
ROOT = Path(__file__).resolve().parents[2]


@contextmanager
def reset_connection() -> Iterator[socket.socket]:
    """The server side of a loopback TCP connection whose client has reset it."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname(), timeout=DEADLINE_S)
        server, _ = listener.accept()
    with server:
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        client.close()  # with linger 0: RST, not FIN
        readable, _, _ = select.select([server], [], [], DEADLINE_S)
        assert readable, "the reset never arrived"
        server.setblocking(False)
        yield server


async def trio_error(operation: Callable[[trio.SocketStream], Awaitable[object]]) -> BaseException:
    """What trio's SocketStream raises for `operation` on a reset connection."""
    with reset_connection() as raw:
        stream = trio.SocketStream(trio.socket.from_stdlib_socket(raw.dup()))
        try:
            with pytest.raises(trio.BrokenResourceError) as caught:
                with trio.fail_after(DEADLINE_S):
                    await operation(stream)
        finally:
            await trio.aclose_forcefully(stream)
    return caught.value


def same_ending(ours: BaseException, trios: BaseException) -> bool:
    return type(ours) is type(trios) and str(ours) == str(trios)


async def test_a_reset_read_ends_as_socketstream_ends_it() -> None:
    expected = await trio_error(lambda stream: stream.receive_some(1024))
    with reset_connection() as raw, pytest.raises(trio.BrokenResourceError) as caught:
        read_now(raw.fileno())
    assert same_ending(caught.value, expected)
    assert isinstance(caught.value.__cause__, ConnectionResetError)


async def test_a_reset_write_ends_as_socketstream_ends_it() -> None:
    expected = await trio_error(lambda stream: stream.send_all(b"x"))
    with reset_connection() as raw, pytest.raises(trio.BrokenResourceError) as caught:
        write_now(raw.fileno(), b"x")
    assert same_ending(caught.value, expected)


def test_a_descriptor_we_closed_is_closed_resource() -> None:
    for fd in (-1, closed_descriptor()):
        with pytest.raises(trio.ClosedResourceError, match="already closed"):
            read_now(fd)
        with pytest.raises(trio.ClosedResourceError, match="already closed"):
            write_now(fd, b"x")


def closed_descriptor() -> int:
    sock = socket.socket()
    fd = sock.fileno()
    sock.close()
    return fd


def test_nothing_yet_is_none_and_a_full_buffer_is_zero() -> None:
    left, right = socket.socketpair()
    with left, right:
        left.setblocking(False)
        assert read_now(left.fileno()) is None
        while write_now(left.fileno(), b"x" * 65536):
            pass
        assert write_now(left.fileno(), b"x") == 0


@asynccontextmanager
async def reset_framed() -> AsyncIterator[FramedStream]:
    with reset_connection() as raw:
        framed = FramedStream(trio.SocketStream(trio.socket.from_stdlib_socket(raw.dup())))
        try:
            yield framed
        finally:
            await framed.aclose()


async def own_read(framed: FramedStream) -> None:
    await framed.receive()


async def hub_read(framed: FramedStream) -> None:
    hub = ReadHub()
    ending: trio.BrokenResourceError | None = None
    async with trio.open_nursery() as nursery:
        await nursery.start(hub.run)
        assert hub.attach(framed, lambda frame: False)
        try:
            await framed.receive()
        except trio.BrokenResourceError as exc:  # raised outside: not in an ExceptionGroup
            ending = exc
        nursery.cancel_scope.cancel()
    if ending is not None:
        raise ending


async def send_at_once(framed: FramedStream) -> None:
    await framed.send(Heartbeat(seq=1))


async def send_in_turn(framed: FramedStream) -> None:
    await framed.send(Ok(message="x" * 60_000))  # beyond the at-once path's size


async def send_without_waiting(framed: FramedStream) -> None:
    framed.send_now(encode(Heartbeat(seq=1)))


PATHS = [own_read, send_at_once, send_in_turn, send_without_waiting]
if ReadHub.available():
    PATHS.append(hub_read)


@pytest.mark.parametrize("path", PATHS, ids=lambda path: path.__name__)
async def test_every_framed_path_ends_a_reset_connection_the_same_way(
    path: Callable[[FramedStream], Awaitable[None]],
) -> None:
    expected = await trio_error(lambda stream: stream.receive_some(1024))
    async with reset_framed() as framed:
        with pytest.raises(trio.BrokenResourceError) as caught:
            with trio.fail_after(DEADLINE_S):
                await path(framed)
    assert str(caught.value) == str(expected)


def test_the_errno_rule_is_written_once() -> None:
    """No reader or writer keeps its own copy of the rule (framed.py once had two)."""
    holders = sorted(
        str(path.relative_to(ROOT)) for path in (ROOT / "lotc").rglob("*.py")
        if "ENOTSOCK" in path.read_text(encoding="utf-8"))
    assert holders == ["lotc/net/sockio.py"]


def test_hot_paths_read_and_write_sockets_only_through_sockio() -> None:
    for name in ("framed.py", "sending.py", "receiving.py", "readhub.py"):
        text = (ROOT / "lotc" / "net" / name).read_text(encoding="utf-8")
        assert "os.read(" not in text and "os.write(" not in text, name
