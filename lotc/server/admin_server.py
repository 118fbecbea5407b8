"""The admin-facing server: console frames <-> controller calls, nothing more.

Each request runs in its own task (bounded per connection), so a slow
command to a far agent does not hold up `ps`. Uploads are the exception:
their chunks are written in arrival order by the read loop itself. A reply
made of several frames flags all but the last with MORE; follow streams
(`events -f`, `logs -f`) end with OK when the console sends CANCEL.
A failed request answers ERROR and the connection stays; only a frame that
is not LOTC, or that the CONTRACT does not let consoles send, closes it.
"""
from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import trio

from lotc.errors import Conflict, LotcError, error_reply
from lotc.net.auth import server_handshake
from lotc.net.framed import FramedStream
from lotc.server import queries
from lotc.server.agent_detail import agent_detail
from lotc.server.agent_server import ping
from lotc.server.bundles import (
    IncomingUpload,
    begin_upload,
    finish_upload,
    ready_message,
    remove_bundle,
)
from lotc.server.controller import Controller
from lotc.server.disk_usage import disk_usage
from lotc.server.duties import carry_out
from lotc.server.exec_run import exec_run
from lotc.server.labels import label_entries, set_labels, unset_labels
from lotc.server.logs import relay_logs
from lotc.server.process_detail import process_detail
from lotc.server.processes import ControlMessage, control_process, start_process
from lotc.server.rollback import bundle_versions, rollback
from lotc.server.rolling import rolling_restart
from lotc.server.scaling import scale_process
from lotc.server.schedules import clear_schedule, set_schedule
from lotc.server.tokens import create_token, revoke_token
from protocol import contract
from protocol.codec import Frame
from protocol.enums import Role
from protocol.errors import ErrorCode, ProtocolError
from protocol.message_types import Leg, MessageType, Phase
from protocol.messages import (
    AgentList,
    AgentResult,
    BundleBegin,
    BundleChunk,
    BundleEnd,
    BundleList,
    BundleRemove,
    BundleVersions,
    Cancel,
    DiskUsage,
    ExecRun,
    LabelList,
    LabelSet,
    LabelUnset,
    ListAgents,
    ListBundles,
    ListBundleVersions,
    ListLabels,
    ListProcesses,
    ListProcessFacts,
    ListRunVersions,
    ListSchedules,
    Message,
    Ok,
    ProcessFacts,
    ProcessList,
    ProcStart,
    ProcStartOptions,
    QueryAgent,
    QueryDisk,
    QueryEvents,
    QueryLogs,
    QueryProcess,
    QueryStats,
    Results,
    Rollback,
    RollingRestart,
    RunVersions,
    ScaleProcess,
    ScheduleClear,
    ScheduleList,
    ScheduleSet,
    TokenCreate,
    TokenRevoke,
)

logger = logging.getLogger(__name__)

MAX_REQUESTS_IN_FLIGHT = 32
# Each upload in progress holds an open partial file: a console gets this many at once,
# so a misbehaving one cannot exhaust the server's file descriptors.
MAX_UPLOADS_PER_CONNECTION = 4
LIST_BATCH = 500  # entries per frame of a list reply


@dataclass
class AdminConnection:
    ctl: Controller
    framed: FramedStream
    admin: str
    uploads: dict[int, IncomingUpload] = field(default_factory=dict)
    follows: dict[int, trio.CancelScope] = field(default_factory=dict)
    slots: trio.Semaphore = field(default_factory=lambda: trio.Semaphore(MAX_REQUESTS_IN_FLIGHT))

    async def reply(self, request_id: int, body: Message, more: bool = False) -> None:
        await self.framed.send(body, request_id, more)

    async def reply_results(self, request_id: int, results: Sequence[AgentResult]) -> None:
        await self.reply(request_id, Results(results=tuple(results)))

    async def reply_list(self, request_id: int, make: Callable[[tuple[Any, ...]], Message],
                         entries: Sequence[Any]) -> None:
        batches = [entries[i:i + LIST_BATCH] for i in range(0, len(entries), LIST_BATCH)] or [[]]
        for index, batch in enumerate(batches):
            await self.reply(request_id, make(tuple(batch)), more=index < len(batches) - 1)


async def handle_admin(ctl: Controller, framed: FramedStream) -> None:
    hello = await server_handshake(
        framed, ctl.token_key, ctl.welcome,
        allowed_role=Role.ADMIN, timeout=ctl.config.handshake_timeout_s,
        revoked_key=ctl.revoked_token_key, make_timing=ctl.timing_for,
    )
    logger.info("console %s connected from %s", hello.name, framed.peer)
    conn = AdminConnection(ctl, framed, hello.name)
    ctl.admin_connected(hello.name, framed)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ping, framed, ctl.config.timing.ping_s)
            await _read_loop(conn, nursery)
            nursery.cancel_scope.cancel()
    finally:
        ctl.admin_disconnected(hello.name, framed)
        for upload in conn.uploads.values():
            upload.close()  # the partial file stays: a reconnecting console resumes it


async def _read_loop(conn: AdminConnection, nursery: trio.Nursery) -> None:
    idle_limit = conn.ctl.config.timing.console_silence_limit_s
    while True:
        frame = await conn.framed.receive_within(idle_limit)
        kind = frame.body.TYPE
        # The CONTRACT refuses what consoles may not send; the tables below route the rest.
        contract.check(Leg.ADMIN_TO_SERVER, Phase.AUTHENTICATED, kind)
        inline = INLINE.get(kind)
        if inline is not None:
            await inline(conn, frame, nursery)
        else:
            await conn.slots.acquire()
            nursery.start_soon(_run_request, conn, frame)


async def _beat(conn: AdminConnection, frame: Frame, nursery: trio.Nursery) -> None:
    """A console's heartbeat: receiving it was the point (the idle limit)."""


async def _cancel(conn: AdminConnection, frame: Frame, nursery: trio.Nursery) -> None:
    scope = conn.follows.get(cast(Cancel, frame.body).cancel_request_id)
    if scope is not None:
        scope.cancel()


async def _run_request(conn: AdminConnection, frame: Frame) -> None:
    try:
        await HANDLERS[frame.body.TYPE](conn, frame.body, frame.request_id)
    except LotcError as exc:
        await conn.framed.send(error_reply(exc), frame.request_id)
    finally:
        conn.slots.release()


async def _upload_step(conn: AdminConnection, frame: Frame, nursery: trio.Nursery) -> None:
    body, request_id = frame.body, frame.request_id
    upload: IncomingUpload | None
    try:
        if isinstance(body, BundleBegin):
            previous = conn.uploads.pop(request_id, None)
            if previous is not None:  # a BEGIN again under the same id restarts that upload
                previous.close()
            if len(conn.uploads) >= MAX_UPLOADS_PER_CONNECTION:
                raise Conflict(f"{MAX_UPLOADS_PER_CONNECTION} uploads already in progress on "
                               "this connection: finish one first")
            upload = begin_upload(conn.ctl, body, conn.ctl.config.max_bundle_bytes)
            conn.uploads[request_id] = upload
            await conn.reply(request_id, ready_message(upload))
        elif isinstance(body, BundleChunk):
            upload = conn.uploads.get(request_id)
            if upload is not None:  # chunks after a failed upload are dropped silently
                upload.write(body)
        elif isinstance(body, BundleEnd):
            upload = conn.uploads.pop(request_id, None)
            if upload is None:
                raise ProtocolError("BUNDLE_END without BUNDLE_BEGIN", ErrorCode.UNEXPECTED_MESSAGE)
            nursery.start_soon(_finish_upload, conn, upload, body, request_id)
    except ProtocolError:
        raise
    except LotcError as exc:
        failed = conn.uploads.pop(request_id, None)
        if failed is not None:
            failed.close()
        await conn.framed.send(error_reply(exc), request_id)


async def _finish_upload(conn: AdminConnection, upload: IncomingUpload, end: BundleEnd,
                         request_id: int) -> None:
    try:
        results = await finish_upload(conn.ctl, upload, end)
        await conn.reply(request_id, Results(results=tuple(results)))
    except LotcError as exc:
        await conn.framed.send(error_reply(exc), request_id)


# ------------------------------------------------------------------ request handlers


async def _list_agents(conn: AdminConnection, body: ListAgents, request_id: int) -> None:
    entries = queries.agents(conn.ctl, body.pattern)
    await conn.reply_list(request_id, lambda batch: AgentList(agents=batch), entries)


async def _list_processes(conn: AdminConnection, body: ListProcesses, request_id: int) -> None:
    entries = await queries.processes(conn.ctl, body.pattern)
    await conn.reply_list(request_id, lambda batch: ProcessList(processes=batch), entries)


async def _list_process_facts(conn: AdminConnection, body: ListProcessFacts,
                              request_id: int) -> None:
    entries = queries.process_facts(conn.ctl, body.pattern)
    await conn.reply_list(request_id, lambda batch: ProcessFacts(processes=batch), entries)


async def _list_run_versions(conn: AdminConnection, body: ListRunVersions,
                             request_id: int) -> None:
    entries = queries.run_versions(conn.ctl, body.pattern)
    await conn.reply_list(request_id, lambda batch: RunVersions(runs=batch), entries)


async def _list_bundles(conn: AdminConnection, body: ListBundles, request_id: int) -> None:
    entries = await queries.bundles(conn.ctl, body.pattern)
    await conn.reply_list(request_id, lambda batch: BundleList(bundles=batch), entries)


async def _list_schedules(conn: AdminConnection, body: ListSchedules, request_id: int) -> None:
    entries = await queries.schedules(conn.ctl, body.pattern)
    await conn.reply_list(request_id, lambda batch: ScheduleList(schedules=batch), entries)


async def _query_stats(conn: AdminConnection, body: QueryStats, request_id: int) -> None:
    """A StatsHistory per matching agent; all but the last flagged MORE (so one named
    agent gets the single frame it always got)."""
    histories = queries.stats_histories(conn.ctl, body.agent, body.since_us, body.limit or 1000)
    # Never empty: resolve_targets raises UnknownAgent rather than match no agent.
    previous = next(histories)
    for history in histories:
        await conn.reply(request_id, previous, more=True)
        previous = history
    await conn.reply(request_id, previous)


async def _query_disk(conn: AdminConnection, body: QueryDisk, request_id: int) -> None:
    entries = await disk_usage(conn.ctl, body.pattern)
    await conn.reply_list(request_id, lambda batch: DiskUsage(disks=batch), entries)


async def _query_events(conn: AdminConnection, body: QueryEvents, request_id: int) -> None:
    with trio.CancelScope() as scope:
        conn.follows[request_id] = scope
        try:
            # Subscribe before reading the history, so nothing falls between the two.
            async with conn.ctl.subscribe_events() as live:
                last_id = 0
                for record in queries.events(conn.ctl, body.pattern, body.since_us,
                                             body.limit or 100):
                    await conn.reply(request_id, queries.event_message(record), more=True)
                    last_id = record.id
                if body.follow:
                    wanted = conn.ctl.match_agents(body.pattern)
                    async for record in live:
                        if record.id > last_id and (wanted is None or record.agent in wanted):
                            await conn.reply(request_id, queries.event_message(record), more=True)
        finally:
            conn.follows.pop(request_id, None)
    await conn.reply(request_id, Ok(message="end of events"))


async def _query_logs(conn: AdminConnection, body: QueryLogs, request_id: int) -> None:
    with trio.CancelScope() as scope:
        conn.follows[request_id] = scope
        try:
            await relay_logs(conn.ctl, body,
                             lambda lines: conn.reply(request_id, lines, more=True))
        finally:
            conn.follows.pop(request_id, None)
    await conn.reply(request_id, Ok(message="end of logs"))


async def _start(conn: AdminConnection, body: ProcStart | ProcStartOptions,
                 request_id: int) -> None:
    await conn.reply_results(request_id, await start_process(conn.ctl, body))


async def _scale(conn: AdminConnection, body: ScaleProcess, request_id: int) -> None:
    await conn.reply_results(request_id, await scale_process(conn.ctl, body))


async def _query_process(conn: AdminConnection, body: QueryProcess, request_id: int) -> None:
    await conn.reply(request_id, await process_detail(conn.ctl, body))


async def _bundle_versions(conn: AdminConnection, body: ListBundleVersions,
                           request_id: int) -> None:
    entries = await bundle_versions(conn.ctl, body)
    await conn.reply_list(request_id, lambda batch: BundleVersions(versions=batch), entries)


async def _rollback(conn: AdminConnection, body: Rollback, request_id: int) -> None:
    await conn.reply_results(request_id, await rollback(conn.ctl, body))


async def _rolling_restart(conn: AdminConnection, body: RollingRestart,
                           request_id: int) -> None:
    await conn.reply_results(request_id, await rolling_restart(conn.ctl, body))


async def _exec_run(conn: AdminConnection, body: ExecRun, request_id: int) -> None:
    results = await exec_run(conn.ctl, body)  # one frame each: output may be a MiB
    for index, result in enumerate(results):
        await conn.reply(request_id, result, more=index < len(results) - 1)


async def _query_agent(conn: AdminConnection, body: QueryAgent, request_id: int) -> None:
    await conn.reply(request_id, await agent_detail(conn.ctl, body))


async def _control(conn: AdminConnection, body: ControlMessage, request_id: int) -> None:
    await conn.reply_results(request_id, await control_process(conn.ctl, body))


async def _remove_bundle(conn: AdminConnection, body: BundleRemove, request_id: int) -> None:
    await conn.reply_results(request_id, await remove_bundle(conn.ctl, body))


async def _schedule_set(conn: AdminConnection, body: ScheduleSet, request_id: int) -> None:
    await conn.reply_results(request_id, await set_schedule(conn.ctl, body))


async def _schedule_clear(conn: AdminConnection, body: ScheduleClear, request_id: int) -> None:
    await conn.reply_results(request_id, await clear_schedule(conn.ctl, body))


async def _token_create(conn: AdminConnection, body: TokenCreate, request_id: int) -> None:
    await conn.reply(request_id, create_token(conn.ctl, body.role, body.name))


async def _label_set(conn: AdminConnection, body: LabelSet, request_id: int) -> None:
    await conn.reply_results(request_id, await set_labels(conn.ctl, body))


async def _label_unset(conn: AdminConnection, body: LabelUnset, request_id: int) -> None:
    await conn.reply_results(request_id, await unset_labels(conn.ctl, body))


async def _list_labels(conn: AdminConnection, body: ListLabels, request_id: int) -> None:
    entries = label_entries(conn.ctl, body.pattern)
    await conn.reply_list(request_id, lambda batch: LabelList(agents=batch), entries)


async def _token_revoke(conn: AdminConnection, body: TokenRevoke, request_id: int) -> None:
    reply, closes = revoke_token(conn.ctl, body.name, conn.framed, conn.admin)
    await carry_out(closes)
    await conn.reply(request_id, reply)
    if body.name == conn.admin:  # its token is gone: the OK was this session's last word
        await conn.framed.aclose()


# Each handler takes the body of its own message type (Any here: one table for all).
Handler = Callable[[AdminConnection, Any, int], Awaitable[None]]

# Handled by the read loop itself, in arrival order (an upload's chunks must be).
Inline = Callable[[AdminConnection, Frame, trio.Nursery], Awaitable[None]]
INLINE: dict[MessageType, Inline] = {
    MessageType.HEARTBEAT: _beat,
    MessageType.CANCEL: _cancel,
    MessageType.BUNDLE_BEGIN: _upload_step,
    MessageType.BUNDLE_CHUNK: _upload_step,
    MessageType.BUNDLE_END: _upload_step,
}

# Requests, each in its own task. INLINE and HANDLERS together route exactly what the
# CONTRACT lets a console send (tests/unit/test_contract.py checks it).
HANDLERS: dict[MessageType, Handler] = {
    MessageType.LIST_AGENTS: _list_agents,
    MessageType.LIST_PROCESSES: _list_processes,
    MessageType.LIST_RUN_VERSIONS: _list_run_versions,
    MessageType.LIST_PROCESS_FACTS: _list_process_facts,
    MessageType.LIST_BUNDLES: _list_bundles,
    MessageType.QUERY_STATS: _query_stats,
    MessageType.QUERY_DISK: _query_disk,
    MessageType.QUERY_EVENTS: _query_events,
    MessageType.QUERY_LOGS: _query_logs,
    MessageType.PROC_START: _start,
    MessageType.PROC_START_OPTIONS: _start,
    MessageType.PROC_STOP: _control,
    MessageType.PROC_RESUME: _control,
    MessageType.PROC_TERMINATE: _control,
    MessageType.PROC_KILL: _control,
    MessageType.PROC_RESTART: _control,
    MessageType.PROC_REMOVE: _control,
    MessageType.SCALE_PROCESS: _scale,
    MessageType.QUERY_PROCESS: _query_process,
    MessageType.QUERY_AGENT: _query_agent,
    MessageType.EXEC_RUN: _exec_run,
    MessageType.ROLLING_RESTART: _rolling_restart,
    MessageType.LIST_BUNDLE_VERSIONS: _bundle_versions,
    MessageType.ROLLBACK: _rollback,
    MessageType.BUNDLE_REMOVE: _remove_bundle,
    MessageType.LIST_SCHEDULES: _list_schedules,
    MessageType.SCHEDULE_SET: _schedule_set,
    MessageType.SCHEDULE_CLEAR: _schedule_clear,
    MessageType.TOKEN_CREATE: _token_create,
    MessageType.TOKEN_REVOKE: _token_revoke,
    MessageType.LABEL_SET: _label_set,
    MessageType.LABEL_UNSET: _label_unset,
    MessageType.LIST_LABELS: _list_labels,
}
