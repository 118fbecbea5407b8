"""The server's SQLite schema and its migrations.

Theory of operation
-------------------
The schema version is `PRAGMA user_version`: 0 for a new file, N after the
N-th migration. `MIGRATIONS[i]` takes a database from version i to i+1; at
open, every missing migration runs in order inside ONE write transaction
with the version bump, so a crash mid-upgrade leaves the file at its old
version, never half-migrated. A file whose version is higher than
`len(MIGRATIONS)` was written by a newer LOTC: it is refused, untouched,
rather than misread. Migrations are append-only: never edit a released one,
add the next.

Several processes may open the file at once (the server, `lotc token` from
the command line): WAL lets readers and one writer proceed together, and
`busy_timeout` makes a writer wait for the other's transaction instead of
failing at once.
"""
from __future__ import annotations

import json
import logging
import os
import sqlite3
from collections.abc import Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

from lotc.errors import LotcError
from protocol.errors import ErrorCode

__all__ = [
    "MIGRATIONS", "SCHEMA_VERSION", "SchemaError", "Store", "agent_clause", "connect", "migrate",
    "schema_version",
]

logger = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 5000  # how long a write waits for another process's transaction

Migration = Sequence[str]  # SQL statements, run in order

V1: Migration = (
    # Tokens are stored only as SHA-256 digests; the name is unique across roles,
    # so a name says who connects without a role to disambiguate it.
    """CREATE TABLE tokens (
        name TEXT PRIMARY KEY,
        role INTEGER NOT NULL,
        digest BLOB NOT NULL,
        created_us INTEGER NOT NULL,
        revoked_us INTEGER
    )""",
    """CREATE TABLE agents (
        name TEXT PRIMARY KEY,
        hostname TEXT NOT NULL,
        address TEXT NOT NULL,
        version TEXT NOT NULL,
        online INTEGER NOT NULL,
        first_seen_us INTEGER NOT NULL,
        last_seen_us INTEGER NOT NULL,
        connected_us INTEGER NOT NULL,
        clock_source TEXT NOT NULL DEFAULT '',
        clock_offset_us INTEGER NOT NULL DEFAULT 0,
        clock_delay_us INTEGER NOT NULL DEFAULT 0,
        clock_measured_us INTEGER NOT NULL DEFAULT 0
    )""",
    # The highest agent event seq stored, kept apart from the events themselves so
    # that pruning old events never lets a replayed one in twice.
    "CREATE TABLE event_marks (agent TEXT PRIMARY KEY, last_seq INTEGER NOT NULL)",
    # Counters that must never go backwards, even when rows are deleted (revision).
    "CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL)",
    """CREATE TABLE desired_bundles (
        agent TEXT NOT NULL,
        name TEXT NOT NULL,
        sha256 BLOB NOT NULL,
        kind INTEGER NOT NULL,
        size INTEGER NOT NULL,
        stored_us INTEGER NOT NULL,
        PRIMARY KEY (agent, name)
    )""",
    """CREATE TABLE reported_bundles (
        agent TEXT NOT NULL,
        name TEXT NOT NULL,
        sha256 BLOB NOT NULL,
        kind INTEGER NOT NULL,
        size INTEGER NOT NULL,
        stored_us INTEGER NOT NULL,
        PRIMARY KEY (agent, name)
    )""",
    """CREATE TABLE processes (
        agent TEXT NOT NULL,
        name TEXT NOT NULL,
        bundle TEXT NOT NULL,
        argv TEXT NOT NULL,
        env TEXT NOT NULL,
        cwd TEXT NOT NULL,
        restart INTEGER NOT NULL,
        liveness_ms INTEGER NOT NULL,
        grace_ms INTEGER NOT NULL,
        backoff_base_ms INTEGER NOT NULL,
        backoff_cap_ms INTEGER NOT NULL,
        restart_limit INTEGER NOT NULL,
        restart_window_s INTEGER NOT NULL,
        desired INTEGER NOT NULL,
        revision INTEGER NOT NULL,
        updated_us INTEGER NOT NULL,
        PRIMARY KEY (agent, name)
    )""",
    """CREATE TABLE process_status (
        agent TEXT NOT NULL,
        name TEXT NOT NULL,
        bundle TEXT NOT NULL,
        revision INTEGER NOT NULL,
        state INTEGER NOT NULL,
        pid INTEGER NOT NULL,
        exit_code INTEGER NOT NULL,
        exit_signal INTEGER NOT NULL,
        restarts INTEGER NOT NULL,
        started_us INTEGER NOT NULL,
        last_liveness_us INTEGER NOT NULL,
        status TEXT NOT NULL,
        updated_us INTEGER NOT NULL,
        PRIMARY KEY (agent, name)
    )""",
    # AUTOINCREMENT: an id is never reused, so `unschedule ID` cannot hit a newer schedule.
    """CREATE TABLE schedules (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        agent TEXT NOT NULL,
        process TEXT NOT NULL,
        action INTEGER NOT NULL,
        signal TEXT NOT NULL,
        kind INTEGER NOT NULL,
        cron TEXT NOT NULL,
        tz TEXT NOT NULL,
        at_us INTEGER NOT NULL,
        next_fire_us INTEGER NOT NULL,
        last_fire_us INTEGER NOT NULL,
        created_us INTEGER NOT NULL
    )""",
    "CREATE INDEX schedules_agent ON schedules (agent, id)",
    # AUTOINCREMENT: ids stay increasing after pruning, so `after_id` cursors stay valid.
    """CREATE TABLE events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        agent TEXT NOT NULL,
        seq INTEGER,
        time_us INTEGER NOT NULL,
        kind INTEGER NOT NULL,
        process TEXT NOT NULL,
        old_state INTEGER NOT NULL,
        new_state INTEGER NOT NULL,
        exit_code INTEGER NOT NULL,
        signal INTEGER NOT NULL,
        message TEXT NOT NULL
    )""",
    "CREATE INDEX events_agent ON events (agent, id)",
    # Node and process figures as JSON text: they are only ever read back whole.
    """CREATE TABLE stats (
        id INTEGER PRIMARY KEY,
        agent TEXT NOT NULL,
        time_us INTEGER NOT NULL,
        node TEXT NOT NULL,
        processes TEXT NOT NULL
    )""",
    "CREATE INDEX stats_agent_time ON stats (agent, time_us)",
    # Rows per agent in `stats`, so retention never has to count them.
    "CREATE TABLE stats_counts (agent TEXT PRIMARY KEY, n INTEGER NOT NULL)",
)

V2: Migration = (
    # Events of fired schedules name the schedule (EVENT.schedule_id on the wire).
    "ALTER TABLE events ADD COLUMN schedule_id INTEGER NOT NULL DEFAULT 0",
)

V3: Migration = (
    # Process options (PROC_START_OPTIONS, lotc.options) as JSON [[key, value], ...].
    "ALTER TABLE processes ADD COLUMN options TEXT NOT NULL DEFAULT '[]'",
)

V4: Migration = (
    # Agent labels (lotc/selectors.py). source 0: the agent's --label, replaced whole at each
    # connect; source 1: set from the console, which wins for its key until unlabel.
    """CREATE TABLE labels (
        agent TEXT NOT NULL,
        source INTEGER NOT NULL,
        key TEXT NOT NULL,
        value TEXT NOT NULL,
        PRIMARY KEY (agent, source, key)
    )""",
)

MIGRATIONS: tuple[Migration, ...] = (V1, V2, V3, V4)
SCHEMA_VERSION = len(MIGRATIONS)


class SchemaError(LotcError):
    """The database cannot be used by this LOTC (written by a newer one, or damaged)."""

    code: ClassVar[ErrorCode] = ErrorCode.INVALID_STATE


def connect(path: Path) -> sqlite3.Connection:
    """Open `path` with the settings every LOTC connection uses."""
    try:
        # isolation_level=None: we issue BEGIN/COMMIT ourselves, one per public operation.
        conn = sqlite3.connect(path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000)
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA journal_mode = WAL")
        # NORMAL in WAL mode: a power cut may lose the last commits, never corrupt the file.
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = ON")
    except sqlite3.DatabaseError as exc:
        raise SchemaError(f"cannot open database {path}: {exc}{_likely_cause(path)}") from None
    return conn


def _likely_cause(path: Path) -> str:
    """SQLite only says "unable to open database file": name the usual reasons."""
    parent = Path(path).absolute().parent
    if not parent.is_dir():
        return f" (directory {parent} does not exist)"
    if not os.access(parent, os.W_OK):  # the WAL and its index are created beside the file
        return f" (directory {parent} is not writable: read-only file system or permissions)"
    return ""


def schema_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def migrate(
    conn: sqlite3.Connection, path: Path, migrations: Sequence[Migration] = MIGRATIONS
) -> int:
    """Bring the schema to `len(migrations)`; returns the version found before."""
    target = len(migrations)
    conn.execute("BEGIN IMMEDIATE")  # take the write lock first: two openers never both migrate
    try:
        found = schema_version(conn)
        if found > target:
            raise SchemaError(
                f"database {path} has schema version {found}, but this LOTC knows only up to "
                f"{target}: it was written by a newer LOTC; upgrade LOTC to use it"
            )
        for version in range(found, target):
            for statement in migrations[version]:
                conn.execute(statement)
        if found != target:
            conn.execute(f"PRAGMA user_version = {target:d}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    if found != target:
        logger.info("database %s migrated from schema version %d to %d", path, found, target)
    return found


class Store:
    """Base of the model's parts: one connection, one transaction per public method."""

    _conn: sqlite3.Connection

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; the write lock is taken at once, so two writers queue
        (busy_timeout) instead of failing half-way on a lock upgrade."""
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield self._conn
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    def _all(self, sql: str, params: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
        return self._conn.execute(sql, tuple(params)).fetchall()


def agent_clause(agent: str | Collection[str] | None) -> tuple[str, list[Any]]:
    """A WHERE fragment selecting one agent, a set of agents, or all of them (None)."""
    if agent is None:
        return "1", []
    if isinstance(agent, str):
        return "agent = ?", [agent]
    # One parameter whatever the number of names: no 999-variable limit, one cached plan.
    return "agent IN (SELECT value FROM json_each(?))", [json.dumps(sorted(agent))]
