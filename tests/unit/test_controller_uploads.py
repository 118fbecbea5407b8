"""Controller uploads without sockets: blobs stored, pushed, resumed, refused, bounded.

A real model on a tmp SQLite file, fake agents and consoles over memory streams
to the server's real handlers (see tests/server_helpers.py).
"""
from __future__ import annotations

import hashlib
import os

import pytest
import trio
import trio.testing

from lotc.errors import (
    ChecksumMismatch,
    InvalidRequest,
    TooLarge,
)
from lotc.server import bundles
from lotc.server.admin_server import MAX_UPLOADS_PER_CONNECTION
from lotc.server.controller import Controller
from lotc.server.processes import control_process, start_process
from protocol.enums import BundleKind, Role
from protocol.errors import ErrorCode
from protocol.messages import (
    BundleBegin,
    BundleChunk,
    BundleEnd,
    BundleReady,
    BundleRemove,
    Error,
    Heartbeat,
    ProcTerminate,
)
from tests.server_helpers import (  # noqa: F401  (fixtures)
    DEADLINE_S,
    SHA_A,
    FakeClock,
    connect_agent,
    connect_console,
    ctl_fixture,
    ensure_token,
    errors_in,
    frames_until_closed,
    give_bundle,
    make_config,
    model_fixture,
    start_msg,
    wait_until,
    wall_fixture,
)

# ------------------------------------------------------------------ uploads


def upload_begin(data: bytes, *, target: str = "web-*", name: str = "app",
                 sha256: bytes | None = None) -> BundleBegin:
    return BundleBegin(target=target, name=name, kind=BundleKind.FILE, size=len(data),
                       sha256=sha256 if sha256 is not None else hashlib.sha256(data).digest())


def write_all(upload: bundles.IncomingUpload, data: bytes, start: int = 0,
              chunk: int = 100_000) -> None:
    for offset in range(start, len(data), chunk):
        upload.write(BundleChunk(offset=offset, data=data[offset:offset + chunk]))


DATA = bytes(range(256)) * 2500  # 640,000 bytes: several agent-side chunks


async def test_upload_stores_blob_and_pushes_to_online_agents(
    ctl: Controller, nursery: trio.Nursery
) -> None:
    fake = await connect_agent(nursery, ctl, "web-1")
    ensure_token(ctl, Role.AGENT, "web-2")
    begin = upload_begin(DATA)
    upload = bundles.begin_upload(ctl, begin, ctl.config.max_bundle_bytes)
    assert bundles.ready_message(upload).offset == 0
    write_all(upload, DATA)
    results = await bundles.finish_upload(ctl, upload, BundleEnd(size=len(DATA)))
    assert [(r.agent, r.code) for r in results] == [("web-1", ErrorCode.OK), ("web-2", ErrorCode.OK)]
    assert results[0].message.startswith("loaded app (640000 bytes")
    assert "agent offline" in results[1].message
    assert ctl.model.has_blob(begin.sha256)
    assert [(b.agent, b.sha256) for b in ctl.model.desired_bundles(None)] == [
        ("web-1", begin.sha256), ("web-2", begin.sha256)]
    assert bytes(fake.bundle_bytes["app"]) == DATA
    chunks = fake.of_type(BundleChunk)
    assert len(chunks) > 1 and all(len(c.data) <= ctl.config.chunk_size for c in chunks)


async def test_push_resumes_from_what_the_agent_holds(
    ctl: Controller, nursery: trio.Nursery
) -> None:
    fake = await connect_agent(nursery, ctl, "web-1")
    fake.ready_offset = 300_000
    upload = bundles.begin_upload(ctl, upload_begin(DATA, target="web-1"), 10**9)
    write_all(upload, DATA)
    [result] = await bundles.finish_upload(ctl, upload, BundleEnd(size=len(DATA)))
    assert result.code == ErrorCode.OK
    assert bytes(fake.bundle_bytes["app"]) == DATA[300_000:]
    assert fake.of_type(BundleChunk)[0].offset == 300_000
    assert fake.of_type(BundleEnd)[0].size == len(DATA)


async def test_upload_with_wrong_sha256_is_refused_and_dropped(ctl: Controller) -> None:
    ensure_token(ctl, Role.AGENT, "web-1")
    wrong = hashlib.sha256(b"something else").digest()
    upload = bundles.begin_upload(ctl, upload_begin(DATA, sha256=wrong), 10**9)
    write_all(upload, DATA)
    with pytest.raises(ChecksumMismatch, match="upload it again"):
        await bundles.finish_upload(ctl, upload, BundleEnd(size=len(DATA)))
    assert not upload.path.exists()
    assert not ctl.model.has_blob(wrong) and ctl.model.desired_bundles(None) == []


async def test_upload_chunks_out_of_order_or_too_long_are_refused(ctl: Controller) -> None:
    ensure_token(ctl, Role.AGENT, "web-1")
    upload = bundles.begin_upload(ctl, upload_begin(DATA), 10**9)
    with pytest.raises(InvalidRequest, match="out of order"):
        upload.write(BundleChunk(offset=100, data=b"x"))
    write_all(upload, DATA)
    with pytest.raises(TooLarge, match="longer than the announced"):
        upload.write(BundleChunk(offset=len(DATA), data=b"x"))
    upload.close()
    with pytest.raises(TooLarge, match="the limit is 1000"):
        bundles.begin_upload(ctl, upload_begin(DATA), 1000)
    with pytest.raises(InvalidRequest, match="32 bytes"):
        bundles.begin_upload(ctl, upload_begin(DATA, sha256=b"short"), 10**9)


async def test_upload_resumes_from_a_partial_file(ctl: Controller) -> None:
    ensure_token(ctl, Role.AGENT, "web-1")
    begin = upload_begin(DATA)
    first = bundles.begin_upload(ctl, begin, 10**9)
    write_all(first, DATA[:250_000])
    with pytest.raises(InvalidRequest, match="send the rest to resume"):
        await bundles.finish_upload(ctl, first, BundleEnd(size=len(DATA)))
    # The console reconnects and asks again: the server says where to go on from.
    second = bundles.begin_upload(ctl, begin, 10**9)
    assert bundles.ready_message(second).offset == 250_000
    write_all(second, DATA, start=250_000)
    [result] = await bundles.finish_upload(ctl, second, BundleEnd(size=len(DATA)))
    assert result.code == ErrorCode.OK
    assert ctl.model.blob_path(begin.sha256).read_bytes() == DATA


async def test_remove_bundle_is_refused_while_a_process_uses_it(
    ctl: Controller, nursery: trio.Nursery
) -> None:
    fake = await connect_agent(nursery, ctl, "web-1")
    give_bundle(ctl, "web-1")
    await start_process(ctl, start_msg())
    [result] = await bundles.remove_bundle(ctl, BundleRemove(target="web-1", name="app"))
    assert result.code == ErrorCode.BUNDLE_IN_USE and "svc" in result.message
    assert fake.of_type(BundleRemove) == []
    await control_process(ctl, ProcTerminate(target="web-1", name="svc"))
    [result] = await bundles.remove_bundle(ctl, BundleRemove(target="web-1", name="app"))
    assert result.code == ErrorCode.OK
    assert ctl.model.desired_bundles("web-1") == [] and ctl.model.find_process("web-1", "svc") is None
    assert [b.name for b in fake.of_type(BundleRemove)] == ["app"]
    [result] = await bundles.remove_bundle(ctl, BundleRemove(target="web-1", name="app"))
    assert result.code == ErrorCode.UNKNOWN_BUNDLE


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def test_a_console_cannot_hold_unbounded_uploads_open(
    ctl: Controller, nursery: trio.Nursery
) -> None:
    ensure_token(ctl, Role.AGENT, "web-1")
    console = await connect_console(nursery, ctl)
    before = open_fds()
    for request_id in range(1, 101):  # BEGINs that never end, each with its own partial file
        data = f"bundle {request_id}".encode()
        await console.send(upload_begin(data, target="web-1", name=f"b{request_id}"), request_id)
    replies = []
    with trio.fail_after(DEADLINE_S):
        while len(replies) < 100:
            frame = await console.receive()
            if not isinstance(frame.body, Heartbeat):
                replies.append(frame.body)
    ready = [r for r in replies if isinstance(r, BundleReady)]
    refused = [r for r in replies if isinstance(r, Error)]
    assert len(ready) == MAX_UPLOADS_PER_CONNECTION
    assert {e.code for e in refused} == {ErrorCode.CONFLICT}
    assert "uploads already in progress" in refused[0].message
    assert open_fds() - before <= MAX_UPLOADS_PER_CONNECTION
    # BEGIN again under an id in progress: the old partial file is closed, not leaked.
    for _ in range(5):
        await console.send(upload_begin(b"again", target="web-1", name="b1"), 1)
        with trio.fail_after(DEADLINE_S):
            while not isinstance((await console.receive()).body, BundleReady):
                pass
    assert open_fds() - before <= MAX_UPLOADS_PER_CONNECTION
