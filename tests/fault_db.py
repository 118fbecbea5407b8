"""Cheap reads of a running server's SQLite model, for the fault tests' polling loops.

A console round trip starts a Python process (a second or more on a loaded
2-core machine); the fault tests poll many times, so they read the server's
database directly (WAL mode: readers never block the server) and keep the
console for commands and for the final, user-visible checks.
"""
from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

from protocol.enums import EventKind


def _rows(db: Path, sql: str, *params: object) -> list[sqlite3.Row]:
    if not db.exists():
        return []
    with closing(sqlite3.connect(db, timeout=5.0)) as conn:
        conn.row_factory = sqlite3.Row
        try:
            return list(conn.execute(sql, params))
        except sqlite3.OperationalError:  # the server is still creating its schema
            return []


def online(db: Path, agent: str) -> bool:
    rows = _rows(db, "SELECT online FROM agents WHERE name = ?", agent)
    return bool(rows and rows[0]["online"])


def events(db: Path, agent: str, kind: EventKind | None = None) -> list[dict[str, Any]]:
    sql = "SELECT * FROM events WHERE agent = ?"
    params: list[object] = [agent]
    if kind is not None:
        sql += " AND kind = ?"
        params.append(int(kind))
    return [dict(r) for r in _rows(db, sql + " ORDER BY id", *params)]


def status(db: Path, agent: str, process: str) -> dict[str, Any]:
    """The process as the agent last reported it ({} if never)."""
    rows = _rows(db, "SELECT * FROM process_status WHERE agent = ? AND name = ?", agent, process)
    return dict(rows[0]) if rows else {}


def reported_bundles(db: Path, agent: str) -> dict[str, int]:
    return {r["name"]: r["size"] for r in _rows(
        db, "SELECT name, size FROM reported_bundles WHERE agent = ?", agent)}


def wait_online(db: Path, *agents: str, timeout: float = 30.0) -> None:
    """Like Cluster.wait_online, without a console process per poll."""
    from tests.cluster import wait_until

    wait_until(lambda: all(online(db, a) for a in agents), timeout,
               what=f"agents {agents} online")


def agent_row(db: Path, agent: str) -> dict[str, Any]:
    """The agent's row in the server's agents table ({} if never seen)."""
    rows = _rows(db, "SELECT * FROM agents WHERE name = ?", agent)
    return dict(rows[0]) if rows else {}
