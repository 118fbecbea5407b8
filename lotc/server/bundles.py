"""Bundles on the server: receiving uploads, pushing them to agents, removing them.

The server keeps every bundle's bytes (by SHA-256, in the model's blob store)
because the desired state must survive the agent being away: an agent that
reconnects later is sent what it misses. An upload is written to a partial
file named after its SHA-256, so a console whose connection broke resumes
where it stopped (BUNDLE_READY says from which offset); only a complete file
whose hash matches becomes a blob.
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import trio

from lotc.errors import (
    AgentOffline,
    BundleInUse,
    ChecksumMismatch,
    InvalidRequest,
    LotcError,
    RequestTimeout,
    TooLarge,
    UnknownBundle,
    wire_text,
)
from lotc.names import validate_name
from lotc.server.command_context import CommandContext
from lotc.server.fanout import fan_out
from lotc.server.records import BundleRecord
from lotc.server.sessions import AgentSession
from protocol.enums import DesiredState, EventKind
from protocol.messages import (
    AgentResult,
    BundleBegin,
    BundleChunk,
    BundleEnd,
    BundleReady,
    BundleRemove,
)

logger = logging.getLogger(__name__)

DEFAULT_MAX_BUNDLE_BYTES = 256 * 1024 * 1024
HASH_READ_SIZE = 1024 * 1024
REASON_BYTES = 500  # of an agent's refusal, quoted in the event
# Failures that are not the agent refusing the bundle: it may take it later.
NOT_REFUSALS = (AgentOffline, RequestTimeout)
CANCEL_TIMEOUT_S = 1.0  # telling an agent to drop an abandoned push is best effort


@dataclass
class IncomingUpload:
    """One console upload in progress, identified by its BEGIN's request id."""

    begin: BundleBegin
    targets: list[str]
    path: Path
    file: BinaryIO
    received: int
    digest: hashlib._Hash = field(repr=False)

    def write(self, chunk: BundleChunk) -> None:
        if chunk.offset != self.received:
            raise InvalidRequest(
                f"chunk at offset {chunk.offset}, expected {self.received}: chunks out of order"
            )
        if self.received + len(chunk.data) > self.begin.size:
            raise TooLarge(f"bundle {self.begin.name!r} is longer than the announced "
                           f"{self.begin.size} bytes")
        self.file.write(chunk.data)
        self.digest.update(chunk.data)
        self.received += len(chunk.data)

    def close(self) -> None:
        self.file.close()


def begin_upload(ctl: CommandContext, begin: BundleBegin, max_bytes: int) -> IncomingUpload:
    validate_name("bundle", begin.name)
    targets = ctl.resolve_targets(begin.target)
    if begin.size > max_bytes:
        raise TooLarge(f"bundle {begin.name!r} is {begin.size} bytes; the limit is {max_bytes}")
    if len(begin.sha256) != 32:
        raise InvalidRequest("sha256 must be 32 bytes")
    path = ctl.store.partial_blob_path(begin.sha256)
    digest = hashlib.sha256()
    received = 0
    if path.exists() and path.stat().st_size <= begin.size:
        with path.open("rb") as existing:  # resuming: re-hash what we already hold
            while block := existing.read(HASH_READ_SIZE):
                digest.update(block)
                received += len(block)
    else:
        path.unlink(missing_ok=True)
    file = path.open("ab")
    return IncomingUpload(begin, targets, path, file, received, digest)


def ready_message(upload: IncomingUpload) -> BundleReady:
    return BundleReady(offset=upload.received)


async def finish_upload(ctl: CommandContext, upload: IncomingUpload, end: BundleEnd) -> list[AgentResult]:
    """Verify, store as a blob, record as desired on every target, push to those online."""
    upload.close()
    begin = upload.begin
    if upload.received != begin.size or end.size != begin.size:
        raise InvalidRequest(f"upload of {begin.name!r} ended at {upload.received} of "
                             f"{begin.size} bytes; send the rest to resume")
    if upload.digest.digest() != begin.sha256:
        upload.path.unlink(missing_ok=True)
        raise ChecksumMismatch(f"bundle {begin.name!r} does not match its SHA-256; upload it again")
    ctl.store.commit_blob(upload.path, begin.sha256)
    now = ctl.now_us()
    for agent in upload.targets:
        ctl.store.set_desired_bundle(agent, begin.name, begin.sha256, begin.kind, begin.size, now)

    async def deliver(agent: str) -> str:
        session = ctl.session(agent)
        if session is None:
            return "stored; agent offline: it gets the bundle when it reconnects"
        record = BundleRecord(agent, begin.name, begin.sha256, begin.kind, begin.size, now)
        await deliver_or_drop(ctl, session, record)
        return f"loaded {begin.name} ({begin.size} bytes, sha256 {begin.sha256.hex()[:12]})"

    return await fan_out(upload.targets, deliver)


async def deliver_or_drop(ctl: CommandContext, session: AgentSession, record: BundleRecord) -> None:
    """Push `record`; if the agent refuses it, it is no longer desired there (see below)."""
    try:
        await push_bundle(ctl, session, record)
    except NOT_REFUSALS:
        raise  # the agent may yet take it: it stays desired, pushed again on reconnect
    except LotcError as exc:
        drop_refused(ctl, record, str(exc))
        exc.args = (f"{exc}; bundle {record.name} not kept for {record.agent}",)
        raise


def drop_refused(ctl: CommandContext, record: BundleRecord, reason: str) -> None:
    """An agent refused a bundle: mark it failed (an event with the agent's reason) and
    drop it from that agent's desired state, back to the version the agent holds.

    Kept desired, it was pushed again (and refused again) on every reconnect, and its
    blob kept for ever; a blob no agent wants any more is deleted.
    """
    agent, name = record.agent, record.name
    desired = {b.name: b for b in ctl.store.desired_bundles(agent)}.get(name)
    if desired is None or desired.sha256 != record.sha256:
        return  # replaced or removed meanwhile: the newer wish stands
    held = {b.name: b for b in ctl.store.reported_bundles(agent)}.get(name)
    if held is not None:
        ctl.store.set_desired_bundle(agent, name, held.sha256, held.kind, held.size,
                                     held.stored_us)
    else:
        ctl.store.remove_desired_bundle(agent, name)
    dropped = ctl.store.drop_blob_if_unused(record.sha256)
    ctl.server_event(agent, EventKind.ERROR,
                     f"bundle {name} (sha256 {record.sha256.hex()[:12]}) failed on {agent}: "
                     f"{wire_text(reason, REASON_BYTES)}; "
                     + (f"{agent} keeps sha256 {held.sha256.hex()[:12]}" if held else
                        "no longer desired there")
                     + ("; its bytes were deleted (no agent wants them)" if dropped else ""))
    logger.warning("bundle %s refused by %s: %s", name, agent, reason)


async def push_bundle(ctl: CommandContext, session: AgentSession, record: BundleRecord) -> None:
    """Send a stored bundle to an agent, resuming from what the agent already holds."""
    timeout = ctl.config.request_timeout_s
    begin = BundleBegin(target="", name=record.name, kind=record.kind, size=record.size,
                        sha256=record.sha256)
    async with session.open_request(begin) as pending:
        try:
            ready = (await pending.reply(timeout)).body
            if not isinstance(ready, BundleReady):
                raise InvalidRequest(f"agent {session.name} answered BUNDLE_BEGIN with "
                                     f"{type(ready).__name__}")
            offset = ready.offset
            with ctl.store.blob_path(record.sha256).open("rb") as blob:
                blob.seek(offset)
                while data := blob.read(ctl.config.chunk_size):
                    await session.send(BundleChunk(offset=offset, data=data), pending.request_id)
                    offset += len(data)
            await session.send(BundleEnd(size=offset), pending.request_id)
        except BaseException:  # cancelled too (the console went away): no half upload left
            await _abandon_push(session, pending.request_id)
            raise
        await pending.reply(timeout)
    logger.info("bundle %s (%d bytes) delivered to %s", record.name, record.size, session.name)


async def _abandon_push(session: AgentSession, request_id: int) -> None:
    """Tell the agent to drop the partial upload of a push we stopped (CANCEL of its id).

    Agents before issue 14 ignore it and keep the partial file, which the next push
    of the same content resumes; their link is unharmed either way."""
    with trio.CancelScope(shield=True), trio.move_on_after(CANCEL_TIMEOUT_S):
        try:
            await session.cancel(request_id)
        except AgentOffline:
            pass  # the link is gone: the next push resumes or replaces the partial file


async def remove_bundle(ctl: CommandContext, request: BundleRemove) -> list[AgentResult]:
    validate_name("bundle", request.name)
    targets = ctl.resolve_targets(request.target)

    async def remove(agent: str) -> str:
        users = [p for p in ctl.store.processes(agent) if p.bundle == request.name]
        active = [p.name for p in users if p.desired != DesiredState.EXITED]
        if active:
            raise BundleInUse(f"bundle {request.name!r} is used by processes {', '.join(active)}"
                              f" on {agent}: terminate them first")
        if not ctl.store.remove_desired_bundle(agent, request.name):
            raise UnknownBundle(f"no bundle {request.name!r} on {agent}")
        for process in users:  # exited processes of this bundle cannot run again: forget them
            ctl.store.remove_process(agent, process.name)
        session = ctl.session(agent)
        if session is None:
            return "removed from the desired state; agent offline: removed when it reconnects"
        await session.request(BundleRemove(target="", name=request.name),
                              ctl.config.request_timeout_s)
        return f"removed {request.name}"

    return await fan_out(targets, remove)
