"""Server requests on the agent: frames -> AgentCore calls -> OK or ERROR.

Process commands run in their own tasks so a slow terminate (grace period)
does not hold up the link; bundle chunks are handled in arrival order by the
read loop itself. A bad request gets an ERROR naming the problem and the link
stays up; only bytes that are not LOTC close it.
"""
from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, cast

import trio

from lotc.actions import for_message
from lotc.agent.core import AgentCore
from lotc.agent.disk import state_dir_disk
from lotc.agent.exec_run import run_command
from lotc.agent.upload import Upload
from lotc.errors import InvalidRequest, LotcError, error_reply, wire_text
from lotc.net.framed import FramedStream
from protocol.codec import Frame
from protocol.enums import StreamKind
from protocol.message_types import MessageType
from protocol.messages import (
    BundleBegin,
    BundleChunk,
    BundleReady,
    BundleRemove,
    BundleSwitch,
    Cancel,
    DiskUsage,
    ExecCommand,
    ListBundleVersions,
    LogLines,
    Message,
    Ok,
    ProcKill,
    ProcRemove,
    ProcRestart,
    ProcResume,
    ProcStart,
    ProcStartOptions,
    ProcStop,
    ProcTerminate,
    QueryLogs,
    ScheduleClear,
    ScheduleSet,
)

logger = logging.getLogger(__name__)

LOG_BATCH_LINES = 500


class RequestHandler:
    def __init__(self, core: AgentCore, framed: FramedStream) -> None:
        self.core = core
        self.framed = framed
        self.uploads: dict[int, Upload] = {}
        self.follows: dict[int, trio.CancelScope] = {}

    async def dispatch(self, frame: Frame, nursery: trio.Nursery) -> None:
        """A server request, routed by its type. The read loop has checked it against
        the CONTRACT, and COMMANDS and ROUTES together cover what it lets the server
        send here (tests/unit/test_contract.py)."""
        kind = frame.body.TYPE
        command = COMMANDS.get(kind)
        if command is not None:
            nursery.start_soon(self._answer, frame, command)
        else:
            await ROUTES[kind](self, frame, nursery)

    async def _cancel_request(self, frame: Frame, nursery: trio.Nursery) -> None:
        self._cancel(cast(Cancel, frame.body).cancel_request_id)

    async def _follow_logs(self, frame: Frame, nursery: trio.Nursery) -> None:
        nursery.start_soon(self._logs, frame)

    async def _refresh(self, frame: Frame, nursery: trio.Nursery) -> None:
        """The server refreshing its view (ps, bundles)."""
        await self.framed.send(await self.core.agent_state(), frame.request_id)

    async def _run_versions(self, frame: Frame, nursery: trio.Nursery) -> None:
        """`ps` asking which version each process runs."""
        await self.framed.send(self.core.run_versions(), frame.request_id)

    async def _process_facts(self, frame: Frame, nursery: trio.Nursery) -> None:
        """`ps` asking for health, readiness... of each process."""
        await self.framed.send(self.core.process_facts(), frame.request_id)

    async def _query_disk(self, frame: Frame, nursery: trio.Nursery) -> None:
        """`stats` asking what df shows for the state dir."""
        nursery.start_soon(self._disk, frame.request_id)

    def _cancel(self, request_id: int) -> None:
        """The server stopped a follow stream, or a push (its console went away)."""
        scope = self.follows.get(request_id)
        if scope is not None:
            scope.cancel()
        upload = self.uploads.pop(request_id, None)
        if upload is not None:
            logger.info("server abandoned the upload of bundle %s at %d of %d bytes: dropped",
                        upload.spec.name, upload.received, upload.spec.size)
            upload.abort()

    async def _answer(self, frame: Frame, command: Command) -> None:
        try:
            message = await command(self.core, frame.body)
        except LotcError as exc:
            logger.info("refused %s: %s", type(frame.body).__name__, exc)
            await self.framed.send(error_reply(exc), frame.request_id)
        else:
            await self.framed.send(Ok(message=wire_text(message)), frame.request_id)

    async def _bundle_versions(self, frame: Frame, nursery: trio.Nursery) -> None:
        """`bundles AGENT --versions`, or the server before a rollback."""
        body = cast(ListBundleVersions, frame.body)
        try:
            reply: Message = self.core.bundle_versions(body.name)
        except LotcError as exc:
            reply = error_reply(exc)
        await self.framed.send(reply, frame.request_id)

    async def _switch(self, frame: Frame, nursery: trio.Nursery) -> None:
        """A rollback: make a kept version current; the server restarts what runs it."""
        body = cast(BundleSwitch, frame.body)
        try:
            reply: Message = await self.core.switch_bundle(body.name, body.sha256)
        except LotcError as exc:
            reply = error_reply(exc)
        await self.framed.send(reply, frame.request_id)

    async def _exec(self, frame: Frame, nursery: trio.Nursery) -> None:
        """`exec` on this node: in its own task, as it may run for its whole timeout."""
        nursery.start_soon(self._run_exec, frame)

    async def _run_exec(self, frame: Frame) -> None:
        result = await run_command(cast(ExecCommand, frame.body), self.core.cgroups)
        await self.framed.send(result, frame.request_id)

    async def _disk(self, request_id: int) -> None:
        # statvfs can hang on a stuck network mount: a thread, so the link keeps reading.
        disk = await trio.to_thread.run_sync(state_dir_disk, self.core.state_dir)
        await self.framed.send(DiskUsage(disks=(disk,)), request_id)

    async def _upload_step(self, frame: Frame, nursery: trio.Nursery) -> None:
        """BUNDLE_BEGIN, _CHUNK and _END, in arrival order."""
        body, request_id = frame.body, frame.request_id
        upload: Upload | None
        try:
            if isinstance(body, BundleBegin):
                upload = self.core.store.begin(body.name, body.kind, body.size, body.sha256)
                self.uploads[request_id] = upload
                await self.framed.send(BundleReady(offset=upload.received), request_id)
            elif isinstance(body, BundleChunk):
                upload = self.uploads.get(request_id)
                if upload is not None:  # chunks of a failed upload are dropped
                    upload.write(body.offset, body.data)
            else:
                upload = self.uploads.pop(request_id, None)
                if upload is None:
                    raise InvalidRequest("BUNDLE_END without a BUNDLE_BEGIN")
                nursery.start_soon(self._commit, upload, request_id)
        except LotcError as exc:
            failed = self.uploads.pop(request_id, None)
            if failed is not None:
                failed.abort()
            await self.framed.send(error_reply(exc), request_id)

    async def _commit(self, upload: Upload, request_id: int) -> None:
        try:
            # Extracting a large tree is slow file work: keep it off the event loop.
            info = await trio.to_thread.run_sync(upload.commit)
        except LotcError as exc:
            await self.framed.send(error_reply(exc), request_id)
            return
        self.core.bundle_stored(info)
        await self.framed.send(Ok(message=f"stored {info.name} sha256 {info.sha256[:12]}"),
                               request_id)

    async def _logs(self, frame: Frame) -> None:
        query = cast(QueryLogs, frame.body)
        request_id = frame.request_id

        async def emit(stream: StreamKind, lines: list[str]) -> None:
            for start in range(0, len(lines), LOG_BATCH_LINES):
                batch = tuple(lines[start:start + LOG_BATCH_LINES])
                await self.framed.send(LogLines(agent="", process=query.process, stream=stream,
                                                lines=batch), request_id, more=True)

        try:
            with trio.CancelScope() as scope:
                self.follows[request_id] = scope
                await self.core.read_logs(query.process, query.lines, query.follow, emit)
        except LotcError as exc:
            await self.framed.send(error_reply(exc), request_id)
            return
        finally:
            self.follows.pop(request_id, None)
        await self.framed.send(Ok(message="end of logs"), request_id)


# Each command takes the body of its own message type (Any here: one table for all).
Command = Callable[[AgentCore, Any], Awaitable[str]]
ControlMessage = ProcStop | ProcResume | ProcTerminate | ProcKill | ProcRestart | ProcRemove


async def _start(core: AgentCore, msg: ProcStart | ProcStartOptions) -> str:
    return await core.start(msg)


async def _control(core: AgentCore, msg: ControlMessage) -> str:
    """Every process command but start: its verb from the one table (lotc.actions)."""
    grace = msg.grace_ms / 1000 if msg.grace_ms else None
    return await core.control(for_message(msg).verb, msg.name, grace=grace,
                              signal=msg.signal or "SIGKILL")


async def _remove_bundle(core: AgentCore, msg: BundleRemove) -> str:
    return await core.remove_bundle(msg.name)


async def _schedule_set(core: AgentCore, msg: ScheduleSet) -> str:
    return await core.set_schedule(msg.schedule)


async def _schedule_clear(core: AgentCore, msg: ScheduleClear) -> str:
    return await core.clear_schedule(msg.id)


# Commands answered with OK or the error, each in its own task.
COMMANDS: dict[MessageType, Command] = {
    MessageType.SCHEDULE_SET: _schedule_set,
    MessageType.SCHEDULE_CLEAR: _schedule_clear,
    MessageType.PROC_START: _start,
    MessageType.PROC_START_OPTIONS: _start,
    MessageType.PROC_STOP: _control,
    MessageType.PROC_RESUME: _control,
    MessageType.PROC_TERMINATE: _control,
    MessageType.PROC_KILL: _control,
    MessageType.PROC_RESTART: _control,
    MessageType.PROC_REMOVE: _control,
    MessageType.BUNDLE_REMOVE: _remove_bundle,
}

Route = Callable[[RequestHandler, Frame, trio.Nursery], Awaitable[None]]

# The other requests, each with its own way of answering.
ROUTES: dict[MessageType, Route] = {
    MessageType.BUNDLE_BEGIN: RequestHandler._upload_step,
    MessageType.BUNDLE_CHUNK: RequestHandler._upload_step,
    MessageType.BUNDLE_END: RequestHandler._upload_step,
    MessageType.CANCEL: RequestHandler._cancel_request,
    MessageType.QUERY_LOGS: RequestHandler._follow_logs,
    MessageType.LIST_PROCESSES: RequestHandler._refresh,
    MessageType.LIST_RUN_VERSIONS: RequestHandler._run_versions,
    MessageType.LIST_PROCESS_FACTS: RequestHandler._process_facts,
    MessageType.EXEC_COMMAND: RequestHandler._exec,
    MessageType.LIST_BUNDLE_VERSIONS: RequestHandler._bundle_versions,
    MessageType.BUNDLE_SWITCH: RequestHandler._switch,
    MessageType.QUERY_DISK: RequestHandler._query_disk,
}
