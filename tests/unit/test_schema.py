"""The model's schema: settings, versioning, migrations, refusal of a newer database."""
from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from lotc.server.model import Model
from lotc.server.schema import MIGRATIONS, SCHEMA_VERSION, SchemaError, connect, migrate
from protocol.enums import Role

# A stand-in for a future migration: the machinery must carry data across it.
V2_FOR_TEST = (
    "ALTER TABLE agents ADD COLUMN labels TEXT NOT NULL DEFAULT ''",
    "CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT NOT NULL)",
)


def user_version(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])
    finally:
        conn.close()


def test_a_new_database_gets_the_current_schema_and_settings(tmp_path: Path) -> None:
    path = tmp_path / "lotc.db"
    model = Model(path)
    try:
        conn = model._conn
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
        assert conn.execute("PRAGMA busy_timeout").fetchone()[0] >= 5000
    finally:
        model.close()
    assert user_version(path) == SCHEMA_VERSION == len(MIGRATIONS)


def test_opening_again_is_idempotent(tmp_path: Path) -> None:
    path = tmp_path / "lotc.db"
    first = Model(path)
    first.create_token(Role.AGENT, "web1", now_us=1)
    second = Model(path)  # another process opening the same file meanwhile
    try:
        assert [t.name for t in second.tokens()] == ["web1"]
    finally:
        second.close()
        first.close()
    conn = connect(path)
    try:
        assert migrate(conn, path) == SCHEMA_VERSION  # found current: nothing to do
    finally:
        conn.close()
    assert user_version(path) == SCHEMA_VERSION


def test_a_database_from_a_newer_lotc_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "lotc.db"
    Model(path).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(SchemaError, match="newer LOTC"):
        Model(path)
    assert user_version(path) == SCHEMA_VERSION + 1


def test_a_file_that_is_not_a_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "lotc.db"
    path.write_bytes(b"this is not an SQLite file at all, not even close" * 20)
    with pytest.raises(SchemaError, match="cannot open database"):
        Model(path)


def test_migrating_from_the_previous_version_keeps_the_data(tmp_path: Path) -> None:
    path = tmp_path / "lotc.db"
    model = Model(path)  # a database written at version N-1 ...
    model.create_token(Role.ADMIN, "alice", now_us=5)
    model.agent_connected("web1", "host", "addr", "v", now_us=6)
    model.close()
    conn = connect(path)
    try:
        found = migrate(conn, path, [*MIGRATIONS, V2_FOR_TEST])  # ... opened by version N
        assert found == SCHEMA_VERSION
        assert conn.execute("SELECT name, labels FROM agents").fetchall() == [("web1", "")]
        assert conn.execute("SELECT name FROM tokens").fetchall() == [("alice",)]
        assert conn.execute("SELECT count(*) FROM notes").fetchone()[0] == 0
    finally:
        conn.close()
    assert user_version(path) == SCHEMA_VERSION + 1


def test_every_migration_runs_in_order_from_an_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "lotc.db"
    conn = connect(path)
    try:
        assert migrate(conn, path, [*MIGRATIONS, V2_FOR_TEST]) == 0
        columns = [row[1] for row in conn.execute("PRAGMA table_info(agents)")]
        assert columns[-1] == "labels"
    finally:
        conn.close()


def test_a_failing_migration_leaves_the_old_version_whole(tmp_path: Path) -> None:
    path = tmp_path / "lotc.db"
    Model(path).close()
    broken = ("CREATE TABLE half_done (x INTEGER)", "THIS IS NOT SQL")
    conn = connect(path)
    try:
        with pytest.raises(sqlite3.OperationalError):
            migrate(conn, path, [*MIGRATIONS, broken])
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
        assert "half_done" not in tables
    finally:
        conn.close()
    assert user_version(path) == SCHEMA_VERSION
    Model(path).close()  # still opens with the released migrations
