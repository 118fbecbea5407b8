"""The model's desired processes, the statuses agents report, and schedules.

A process spec gets a new revision on every `put_process`, from a counter
that never goes back (not max(revision) + 1, which a removal would lower):
an agent echoing the revision it runs can always be told it is stale.
Changing only the desired state (stop, resume, terminate) keeps the revision,
since the agent need not restart anything for it.
"""
from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Collection, Iterable
from dataclasses import replace
from typing import Any

from lotc.errors import UnknownProcess, UnknownSchedule
from lotc.names import validate_name
from lotc.server.records import ProcessSpecRecord, ProcessStatusRecord, ScheduleRecord
from lotc.server.schema import Store, agent_clause
from protocol.enums import Action, DesiredState, ProcessState, RestartPolicy, ScheduleKind

__all__ = ["DesiredStore"]

logger = logging.getLogger(__name__)

NOT_RUNNING = {ProcessState.EXITED, ProcessState.FAILED, ProcessState.BACKOFF}

_PROCESS_COLUMNS = (
    "agent, name, bundle, argv, env, cwd, restart, liveness_ms, grace_ms, backoff_base_ms, "
    "backoff_cap_ms, restart_limit, restart_window_s, desired, revision, updated_us, options"
)
_STATUS_COLUMNS = (
    "agent, name, bundle, revision, state, pid, exit_code, exit_signal, restarts, started_us, "
    "last_liveness_us, status, updated_us"
)
_SCHEDULE_COLUMNS = (
    "id, agent, process, action, signal, kind, cron, tz, at_us, next_fire_us, last_fire_us, "
    "created_us"
)


def _process(row: tuple[Any, ...]) -> ProcessSpecRecord:
    (agent, name, bundle, argv, env, cwd, restart, liveness_ms, grace_ms, backoff_base_ms,
     backoff_cap_ms, restart_limit, restart_window_s, desired, revision, updated_us, options) = row
    return ProcessSpecRecord(
        agent, name, bundle, tuple(json.loads(argv)), tuple(tuple(kv) for kv in json.loads(env)),
        cwd, RestartPolicy(restart), liveness_ms, grace_ms, backoff_base_ms, backoff_cap_ms,
        restart_limit, restart_window_s, DesiredState(desired), revision, updated_us,
        tuple(tuple(kv) for kv in json.loads(options)),
    )


def _process_values(spec: ProcessSpecRecord) -> tuple[Any, ...]:
    return (
        spec.agent, spec.name, spec.bundle, json.dumps(list(spec.argv)),
        json.dumps([list(kv) for kv in spec.env]), spec.cwd, int(RestartPolicy(spec.restart)),
        spec.liveness_ms, spec.grace_ms, spec.backoff_base_ms, spec.backoff_cap_ms,
        spec.restart_limit, spec.restart_window_s, int(DesiredState(spec.desired)),
        spec.revision, spec.updated_us, json.dumps([list(kv) for kv in spec.options]),
    )


def _status(row: tuple[Any, ...]) -> ProcessStatusRecord:
    (agent, name, bundle, revision, state, pid, exit_code, exit_signal, restarts, started_us,
     last_liveness_us, status, updated_us) = row
    return ProcessStatusRecord(agent, name, bundle, revision, ProcessState(state), pid, exit_code,
                               exit_signal, restarts, started_us, last_liveness_us, status,
                               updated_us)


def _status_values(s: ProcessStatusRecord) -> tuple[Any, ...]:
    return (s.agent, s.name, s.bundle, s.revision, int(ProcessState(s.state)), s.pid,
            s.exit_code, s.exit_signal, s.restarts, s.started_us, s.last_liveness_us, s.status,
            s.updated_us)


def _schedule(row: tuple[Any, ...]) -> ScheduleRecord:
    (id_, agent, process, action, signal, kind, cron, tz, at_us, next_fire_us, last_fire_us,
     created_us) = row
    return ScheduleRecord(id_, agent, process, Action(action), signal, ScheduleKind(kind), cron,
                          tz, at_us, next_fire_us, last_fire_us, created_us)


class DesiredStore(Store):
    # ------------------------------------------------------------ desired processes

    def put_process(
        self, spec: ProcessSpecRecord, keep_revision: bool = False
    ) -> ProcessSpecRecord:
        """Store `spec` (insert or replace) under a new revision, which it returns.

        Revisions increase across the whole database and never repeat, even
        after a removal, so an agent running an older spec is always detected.
        `keep_revision` puts back a spec read earlier exactly as it was (undoing
        a refused change): a new revision would make the agent, which still
        runs that spec, look stale and get it restarted at the next reconcile.
        """
        validate_name("agent", spec.agent)
        validate_name("process", spec.name)
        validate_name("bundle", spec.bundle)
        with self._write() as db:
            if keep_revision and spec.revision > 0:
                stored = spec
            else:
                stored = replace(spec, revision=self._next_revision(db))
            db.execute(f"INSERT OR REPLACE INTO processes ({_PROCESS_COLUMNS}) "
                       f"VALUES ({', '.join('?' * 17)})", _process_values(stored))
        return stored

    @staticmethod
    def _next_revision(db: sqlite3.Connection) -> int:
        row = db.execute(
            "INSERT INTO counters VALUES ('revision', 1) "
            "ON CONFLICT (name) DO UPDATE SET value = value + 1 RETURNING value"
        ).fetchall()[0]
        return int(row[0])

    def set_desired_state(
        self, agent: str, name: str, desired: DesiredState, now_us: int | None = None
    ) -> ProcessSpecRecord:
        """Change only what the process should be; its spec and revision stay."""
        with self._write() as db:
            rows = db.execute(
                f"UPDATE processes SET desired = ?, updated_us = COALESCE(?, updated_us) "
                f"WHERE agent = ? AND name = ? RETURNING {_PROCESS_COLUMNS}",
                (int(DesiredState(desired)), now_us, agent, name),
            ).fetchall()
        if not rows:
            raise UnknownProcess(f"no process {name!r} on {agent}")
        return _process(rows[0])

    def remove_process(self, agent: str, name: str) -> bool:
        with self._write() as db:
            cursor = db.execute("DELETE FROM processes WHERE agent = ? AND name = ?",
                                (agent, name))
        return cursor.rowcount > 0

    def processes(self, agent: str | Collection[str] | None = None) -> list[ProcessSpecRecord]:
        where, params = agent_clause(agent)
        rows = self._all(f"SELECT {_PROCESS_COLUMNS} FROM processes WHERE {where} "
                         f"ORDER BY agent, name", params)
        return [_process(row) for row in rows]

    def find_process(self, agent: str, name: str) -> ProcessSpecRecord | None:
        rows = self._all(f"SELECT {_PROCESS_COLUMNS} FROM processes WHERE agent = ? AND name = ?",
                         (agent, name))
        return _process(rows[0]) if rows else None

    def process(self, agent: str, name: str) -> ProcessSpecRecord:
        spec = self.find_process(agent, name)
        if spec is None:
            raise UnknownProcess(f"no process {name!r} on {agent}")
        return spec

    # ------------------------------------------------------------ reported process statuses

    def replace_process_statuses(self, agent: str, statuses: Iterable[ProcessStatusRecord]) -> None:
        """The agent's full report: processes it no longer mentions are forgotten."""
        rows = [_status_values(replace(s, agent=agent)) for s in statuses]
        with self._write() as db:
            db.execute("DELETE FROM process_status WHERE agent = ?", (agent,))
            db.executemany(f"INSERT OR REPLACE INTO process_status ({_STATUS_COLUMNS}) "
                           f"VALUES ({', '.join('?' * 13)})", rows)

    def update_process_status(self, record: ProcessStatusRecord) -> None:
        with self._write() as db:
            db.execute(f"INSERT OR REPLACE INTO process_status ({_STATUS_COLUMNS}) "
                       f"VALUES ({', '.join('?' * 13)})", _status_values(record))

    def note_process_state(
        self, agent: str, name: str, state: ProcessState, exit_code: int, exit_signal: int,
        now_us: int,
    ) -> None:
        """Apply a state-change event to the stored status (creating it if need be)."""
        # A process that is not running has no pid: do not show a stale one.
        pid_clause = "0" if ProcessState(state) in NOT_RUNNING else "pid"
        with self._write() as db:
            cursor = db.execute(
                f"UPDATE process_status SET state = ?, exit_code = ?, exit_signal = ?, "
                f"pid = {pid_clause}, updated_us = ? WHERE agent = ? AND name = ?",
                (int(state), exit_code, exit_signal, now_us, agent, name),
            )
            if cursor.rowcount:
                return
            spec = db.execute("SELECT bundle, revision FROM processes WHERE agent = ? "
                              "AND name = ?", (agent, name)).fetchone()
            bundle, revision = spec if spec is not None else ("", 0)
            db.execute(f"INSERT INTO process_status ({_STATUS_COLUMNS}) "
                       f"VALUES (?, ?, ?, ?, ?, 0, ?, ?, 0, 0, 0, '', ?)",
                       (agent, name, bundle, revision, int(state), exit_code, exit_signal,
                        now_us))

    def process_statuses(
        self, agent: str | Collection[str] | None = None
    ) -> list[ProcessStatusRecord]:
        where, params = agent_clause(agent)
        rows = self._all(f"SELECT {_STATUS_COLUMNS} FROM process_status WHERE {where} "
                         f"ORDER BY agent, name", params)
        return [_status(row) for row in rows]

    # ------------------------------------------------------------ schedules

    def add_schedule(self, record: ScheduleRecord) -> ScheduleRecord:
        """Store a schedule; its `id` is ignored and the assigned one returned."""
        validate_name("agent", record.agent)
        validate_name("process", record.process)
        with self._write() as db:
            cursor = db.execute(
                f"INSERT INTO schedules ({_SCHEDULE_COLUMNS}) "
                f"VALUES (NULL, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (record.agent, record.process, int(Action(record.action)), record.signal,
                 int(ScheduleKind(record.kind)), record.cron, record.tz, record.at_us,
                 record.next_fire_us, record.last_fire_us, record.created_us),
            )
        return replace(record, id=int(cursor.lastrowid or 0))

    def remove_schedule(self, schedule_id: int) -> ScheduleRecord:
        with self._write() as db:
            rows = db.execute(f"DELETE FROM schedules WHERE id = ? RETURNING {_SCHEDULE_COLUMNS}",
                              (schedule_id,)).fetchall()
        if not rows:
            raise UnknownSchedule(f"no schedule with id {schedule_id}")
        return _schedule(rows[0])

    def schedule(self, schedule_id: int) -> ScheduleRecord:
        rows = self._all(f"SELECT {_SCHEDULE_COLUMNS} FROM schedules WHERE id = ?",
                         (schedule_id,))
        if not rows:
            raise UnknownSchedule(f"no schedule with id {schedule_id}")
        return _schedule(rows[0])

    def schedules(self, agent: str | Collection[str] | None = None) -> list[ScheduleRecord]:
        where, params = agent_clause(agent)
        rows = self._all(f"SELECT {_SCHEDULE_COLUMNS} FROM schedules WHERE {where} ORDER BY id",
                         params)
        return [_schedule(row) for row in rows]

    def update_schedule_fire(
        self, schedule_id: int, next_fire_us: int, last_fire_us: int
    ) -> ScheduleRecord:
        with self._write() as db:
            rows = db.execute(
                f"UPDATE schedules SET next_fire_us = ?, last_fire_us = ? WHERE id = ? "
                f"RETURNING {_SCHEDULE_COLUMNS}",
                (next_fire_us, last_fire_us, schedule_id),
            ).fetchall()
        if not rows:
            raise UnknownSchedule(f"no schedule with id {schedule_id}")
        return _schedule(rows[0])
