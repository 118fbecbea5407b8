"""FramedStream: frames over a trio stream, deadlines on sending, clear endings."""
from __future__ import annotations

import socket
import struct

import pytest
import trio
import trio.testing

from lotc.net.framed import CLOSE_TIMEOUT_S, FramedStream, PeerClosed
from protocol.codec import encode
from protocol.errors import ErrorCode, ProtocolError
from protocol.messages import BundleChunk, Error, Heartbeat, Ok
from protocol.spec import HEADER_SIZE, MAGIC, VERSION, MessageType

DEADLINE_S = 5.0


def pair(**options: object) -> tuple[FramedStream, FramedStream]:
    a, b = trio.testing.memory_stream_pair()
    return FramedStream(a, peer="a", **options), FramedStream(b, peer="b", **options)  # type: ignore[arg-type]


async def test_send_and_receive_frames_in_order() -> None:
    a, b = pair()
    await a.send(Heartbeat(seq=1))
    await a.send(Ok(message="fine"), request_id=7, more=True)
    first, second = await b.receive(), await b.receive()
    assert (first.body, first.request_id, first.more) == (Heartbeat(seq=1), 0, False)
    assert (second.body, second.request_id, second.more) == (Ok(message="fine"), 7, True)
    assert a.bytes_sent == b.bytes_received > 2 * HEADER_SIZE


async def test_frames_split_and_joined_anyhow_arrive_whole() -> None:
    a, b = pair()
    data = b"".join(encode(Heartbeat(seq=i), i) for i in range(1, 51))
    for i in range(0, len(data), 5):  # 5-byte pieces: headers and bodies cut everywhere
        await a.send_bytes(data[i:i + 5])
    frames = [await b.receive() for _ in range(50)]
    assert [f.body.seq for f in frames] == list(range(1, 51))
    assert [f.request_id for f in frames] == list(range(1, 51))


async def test_eof_is_peer_closed() -> None:
    a, b = pair()
    await a.send(Heartbeat(seq=1))
    await a.aclose()
    assert (await b.receive()).body == Heartbeat(seq=1)
    with pytest.raises(PeerClosed, match="a closed|b closed"):
        await b.receive()


async def test_eof_in_the_middle_of_a_frame_is_peer_closed() -> None:
    a, b = pair()
    await a.send_bytes(encode(Ok(message="cut short"))[:-3])
    await a.aclose()
    with pytest.raises(PeerClosed):
        await b.receive()


async def test_our_own_close_is_closed_resource() -> None:
    _, b = pair()
    await b.aclose()
    with pytest.raises(trio.ClosedResourceError):
        await b.receive()
    with pytest.raises(trio.ClosedResourceError):
        await b.send(Heartbeat())


async def test_close_while_another_task_receives() -> None:
    _, b = pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(b.aclose)
        with pytest.raises(trio.ClosedResourceError):
            await b.receive()


async def test_garbage_is_a_protocol_error() -> None:
    a, b = pair()
    await a.send_bytes(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 20)  # TLS hello
    with pytest.raises(ProtocolError) as info:
        await b.receive()
    assert info.value.code == ErrorCode.BAD_MAGIC


async def test_oversize_frame_is_refused_from_its_header_alone() -> None:
    a, b = pair(max_body=1024)
    header = struct.pack(">2sBBHII", MAGIC, VERSION, int(MessageType.BUNDLE_CHUNK), 0, 1, 1025)
    await a.send_bytes(header)  # no body follows: the refusal must not wait for it
    with trio.fail_after(DEADLINE_S):
        with pytest.raises(ProtocolError) as info:
            await b.receive()
    assert info.value.code == ErrorCode.OVERSIZE_FRAME


async def test_frame_at_the_limit_passes() -> None:
    body_room = 1024 - 8 - 4  # BundleChunk: u64 offset + u32 blob length
    a, b = pair(max_body=1024)
    await a.send(BundleChunk(offset=3, data=b"z" * body_room))
    frame = await b.receive()
    assert frame.body.data == b"z" * body_room


async def test_send_to_a_peer_that_never_reads_times_out(
    autojump_clock: trio.testing.MockClock,
) -> None:
    a_end, _never_read = trio.testing.lockstep_stream_pair()
    a = FramedStream(a_end, peer="stuck", send_timeout=7.0)
    start = trio.current_time()
    with pytest.raises(trio.TooSlowError):
        await a.send(Heartbeat(seq=1))
    assert trio.current_time() - start == pytest.approx(7.0)


async def test_send_error_never_raises_and_is_bounded(
    autojump_clock: trio.testing.MockClock,
) -> None:
    a_end, _never_read = trio.testing.lockstep_stream_pair()
    stuck = FramedStream(a_end, peer="stuck", send_timeout=60.0)
    start = trio.current_time()
    await stuck.send_error(ProtocolError("bad", ErrorCode.BAD_MAGIC))
    assert trio.current_time() - start == pytest.approx(CLOSE_TIMEOUT_S)
    a, b = pair()
    await b.aclose()
    await a.send_error(ProtocolError("bad"))  # the peer is gone: nothing raised
    await a.aclose()
    await a.send_error(ProtocolError("bad"))  # we closed it: nothing raised either


async def test_send_error_carries_code_and_bounded_message() -> None:
    a, b = pair()
    await a.send_error(ProtocolError("x" * 5000, ErrorCode.OVERSIZE_FRAME), request_id=9)
    frame = await b.receive()
    assert isinstance(frame.body, Error) and frame.request_id == 9
    assert frame.body.code == ErrorCode.OVERSIZE_FRAME and len(frame.body.message) <= 1000
    assert frame.body.message.startswith("x" * 900) and frame.body.message.endswith("bytes cut)")


async def test_concurrent_senders_do_not_interleave() -> None:
    a_end, b_end = trio.testing.lockstep_stream_pair()  # every send_all waits for the reader
    a, b = FramedStream(a_end), FramedStream(b_end)
    big = [BundleChunk(offset=i, data=bytes([i]) * 100_000) for i in range(8)]
    received = []
    async with trio.open_nursery() as nursery:
        for chunk in big:
            nursery.start_soon(a.send, chunk)
        with trio.fail_after(DEADLINE_S):
            for _ in big:
                received.append((await b.receive()).body)
    assert sorted(received, key=lambda c: c.offset) == big


async def test_aclose_is_bounded_even_if_the_stream_hangs(
    autojump_clock: trio.testing.MockClock,
) -> None:
    class Hanging(trio.abc.Stream):
        """A transport whose graceful close never ends (a TLS peer that never acks)."""

        forced = False

        async def aclose(self) -> None:
            if self.forced:
                return
            self.forced = True  # aclose_forcefully calls aclose again, cancelled
            await trio.sleep_forever()

        async def send_all(self, data: object) -> None:
            raise trio.ClosedResourceError

        async def wait_send_all_might_not_block(self) -> None:
            pass

        async def receive_some(self, max_bytes: int | None = None) -> bytes:
            return b""

    framed = FramedStream(Hanging(), peer="tls-peer")  # type: ignore[arg-type]
    start = trio.current_time()
    with trio.CancelScope() as outer:
        outer.cancel()  # even from a cancelled scope, close runs (shielded) and ends
        await framed.aclose()
    assert trio.current_time() - start == pytest.approx(CLOSE_TIMEOUT_S)


async def test_a_send_cancelled_mid_frame_still_sends_the_whole_frame() -> None:
    # Issue 14 item 13: a push cancelled (its console killed) left half a chunk frame on
    # the agent's link, which then read the next frames as the rest of that body.
    left, right = trio.socket.socketpair()  # real sockets: the kernel takes part of a frame
    for sock in (left, right):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sender = FramedStream(trio.SocketStream(left))
    receiver = FramedStream(trio.SocketStream(right))
    chunk = BundleChunk(offset=0, data=b"z" * 300_000)
    try:
        async with trio.open_nursery() as nursery:
            scope = trio.CancelScope()

            async def push() -> None:
                with scope:
                    await sender.send(chunk, 5)

            nursery.start_soon(push)
            with trio.fail_after(5):
                await trio.lowlevel.wait_readable(right)  # the frame has begun...
            scope.cancel()  # ...when its sender is cancelled
            with trio.fail_after(5):
                frame = await receiver.receive()
        assert frame.body == chunk and frame.request_id == 5
        with trio.fail_after(5):  # and the link goes on, in step
            await sender.send(Ok(message="next"), 6)
            assert (await receiver.receive()).body == Ok(message="next")
    finally:
        await sender.aclose()
        await receiver.aclose()


async def test_a_frame_the_peer_never_finishes_reading_closes_the_link(
    autojump_clock: trio.testing.MockClock,
) -> None:
    a_end, b_end = trio.testing.lockstep_stream_pair()
    sender = FramedStream(a_end, send_timeout=3.0)
    async with trio.open_nursery() as nursery:
        async def stall() -> None:
            await b_end.receive_some(1000)  # reads the start, then stops reading

        nursery.start_soon(stall)
        with pytest.raises(trio.TooSlowError):
            await sender.send(BundleChunk(offset=0, data=b"z" * 300_000))
    with pytest.raises(trio.ClosedResourceError):  # no half frame left on a live link
        await sender.send(Ok(message="after"))
