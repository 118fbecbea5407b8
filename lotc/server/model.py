"""The server's model: what should be and what was reported, stored in SQLite.

Theory of operation
-------------------
The model only stores; the controller decides. One `Model` owns one
synchronous sqlite3 connection (WAL, see schema.py) and every public method
is one short transaction, so another process using the same file (`lotc
token revoke` while the server runs) sees all of a change or none of it.
`data_version()` changes when another connection commits, which lets the
server notice such writes without re-reading tables.

Times are ints of UTC microseconds passed in by the caller (`now_us`), so
tests control time. The parts live in their own modules: this one holds
tokens, agents, bundles and their blobs; model_desired.py desired processes,
reported statuses and schedules; model_history.py events and stats with
their retention.
"""
from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Collection, Iterable
from pathlib import Path
from typing import Any

from lotc.errors import Conflict, UnknownAgent
from lotc.names import validate_name
from lotc.server.blobstore import BlobStore
from lotc.server.model_desired import DesiredStore
from lotc.server.model_history import HistoryStore, Retention
from lotc.server.model_labels import LabelStore
from lotc.server.records import AgentRecord, BundleRecord, TokenRecord
from lotc.server.schema import SchemaError, agent_clause, connect, migrate
from lotc.token_names import new_token
from protocol.enums import BundleKind, Role

__all__ = ["Model", "Retention", "SchemaError"]

logger = logging.getLogger(__name__)

_AGENT_SELECT = (
    "SELECT a.name, hostname, address, version, online, first_seen_us, last_seen_us, "
    "connected_us, clock_source, clock_offset_us, clock_delay_us, clock_measured_us, "
    "COALESCE(m.last_seq, 0) FROM agents a LEFT JOIN event_marks m ON m.agent = a.name"
)
_BUNDLE_COLUMNS = "agent, name, sha256, kind, size, stored_us"


def _agent(row: tuple[Any, ...]) -> AgentRecord:
    (name, hostname, address, version, online, first_seen_us, last_seen_us, connected_us,
     clock_source, clock_offset_us, clock_delay_us, clock_measured_us, last_event_seq) = row
    return AgentRecord(name, hostname, address, version, bool(online), first_seen_us,
                       last_seen_us, connected_us, clock_source, clock_offset_us, clock_delay_us,
                       clock_measured_us, last_event_seq)


def _bundle(row: tuple[Any, ...]) -> BundleRecord:
    agent, name, sha256, kind, size, stored_us = row
    return BundleRecord(agent, name, bytes(sha256), BundleKind(kind), size, stored_us)


DEFAULT_RETENTION = Retention()


class Model(DesiredStore, HistoryStore, LabelStore):
    def __init__(self, path: Path, retention: Retention = DEFAULT_RETENTION) -> None:
        self.path = Path(path)
        self.retention = retention
        self.blobs = BlobStore(self.path.parent / f"{self.path.stem}-blobs")
        self._conn = connect(self.path)
        try:
            migrate(self._conn, self.path)
        except BaseException:
            self._conn.close()
            raise
        self._events_since_prune = 0
        with self._write() as db:
            self._prune_events(db)  # re-establish the bound, whatever the last run left

    def close(self) -> None:
        self._conn.close()

    def set_wal_autocheckpoint(self, pages: int) -> None:
        """How big the WAL grows before a commit of ours copies it back (see checkpointer.py)."""
        self._conn.execute(f"PRAGMA wal_autocheckpoint = {int(pages)}")

    def wal_autocheckpoint(self) -> int:
        return int(self._conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0])

    def data_version(self) -> int:
        """Changes whenever another connection (another process) commits to the file."""
        return int(self._conn.execute("PRAGMA data_version").fetchone()[0])

    # ------------------------------------------------------------ tokens

    def create_token(self, role: Role, name: str, now_us: int) -> str:
        """Issue a token for `name` and return it: the only time it exists in clear."""
        validate_name(Role(role).name.lower(), name)
        token = new_token(name)  # carries its owner's name (lotc/token_names.py)
        digest = hashlib.sha256(token.encode()).digest()
        with self._write() as db:
            row = db.execute("SELECT role, revoked_us FROM tokens WHERE name = ?",
                             (name,)).fetchone()
            if row is not None and row[1] is None:
                raise Conflict(f"{name!r} already holds a live {Role(row[0]).name.lower()} "
                               f"token: revoke it first")
            db.execute("INSERT OR REPLACE INTO tokens VALUES (?, ?, ?, ?, NULL)",
                       (name, int(role), digest, now_us))
        return token

    def token_key(self, role: Role, name: str) -> bytes | None:
        """SHA-256 of `name`'s live token of `role` (the HMAC key), None if there is none."""
        row = self._conn.execute(
            "SELECT digest FROM tokens WHERE name = ? AND role = ? AND revoked_us IS NULL",
            (name, int(role)),
        ).fetchone()
        return None if row is None else bytes(row[0])

    def revoked_token_key(self, role: Role, name: str) -> bytes | None:
        """The HMAC key of `name`'s revoked token of `role`, None if it has none.

        Kept so the server can tell a client that proves it holds a revoked token
        "revoked" rather than "authentication failed" (see lotc.net.auth).
        """
        row = self._conn.execute(
            "SELECT digest FROM tokens WHERE name = ? AND role = ? AND revoked_us IS NOT NULL",
            (name, int(role)),
        ).fetchone()
        return None if row is None else bytes(row[0])

    def revoke_token(self, name: str, now_us: int) -> bool:
        """True if `name` held a live token, now revoked."""
        with self._write() as db:
            cursor = db.execute(
                "UPDATE tokens SET revoked_us = ? WHERE name = ? AND revoked_us IS NULL",
                (now_us, name),
            )
        return cursor.rowcount > 0

    def is_revoked(self, name: str) -> bool:
        """True when `name` holds no live token (revoked, or never issued)."""
        row = self._conn.execute(
            "SELECT 1 FROM tokens WHERE name = ? AND revoked_us IS NULL", (name,)
        ).fetchone()
        return row is None

    def tokens(self) -> list[TokenRecord]:
        rows = self._all("SELECT name, role, created_us, revoked_us FROM tokens ORDER BY name")
        return [TokenRecord(name, Role(role), created, revoked)
                for name, role, created, revoked in rows]

    # ------------------------------------------------------------ agents

    def agent_connected(
        self, name: str, hostname: str, address: str, version: str, now_us: int
    ) -> AgentRecord:
        validate_name("agent", name)
        with self._write() as db:
            db.execute(
                "INSERT INTO agents (name, hostname, address, version, online, first_seen_us, "
                "last_seen_us, connected_us) VALUES (?, ?, ?, ?, 1, ?, ?, ?) "
                "ON CONFLICT (name) DO UPDATE SET hostname = excluded.hostname, "
                "address = excluded.address, version = excluded.version, online = 1, "
                "last_seen_us = excluded.last_seen_us, connected_us = excluded.connected_us",
                (name, hostname, address, version, now_us, now_us, now_us),
            )
        return self.agent(name)

    def agent_seen(self, names: Iterable[str], now_us: int) -> None:
        """Batched heartbeat: one statement for any number of agents."""
        listed = json.dumps(sorted(set(names)))
        with self._write() as db:
            db.execute(
                "UPDATE agents SET last_seen_us = ? "
                "WHERE name IN (SELECT value FROM json_each(?)) AND last_seen_us < ?",
                (now_us, listed, now_us),
            )

    def agent_offline(self, name: str, now_us: int) -> bool:
        """Record the offline verdict; False if the agent is unknown or already offline.

        last_seen_us keeps the last time the agent was heard from, not `now_us`:
        that is the figure an operator needs to judge what happened.
        """
        del now_us  # the verdict's time is recorded by the AGENT_OFFLINE event
        with self._write() as db:
            cursor = db.execute("UPDATE agents SET online = 0 WHERE name = ? AND online = 1",
                                (name,))
        return cursor.rowcount > 0

    def mark_all_offline(self, now_us: int) -> int:
        """At server start nobody is connected yet, whatever the last run recorded."""
        del now_us
        with self._write() as db:
            return db.execute("UPDATE agents SET online = 0 WHERE online = 1").rowcount

    def set_agent_clock(
        self, name: str, source: str, offset_us: int, delay_us: int, measured_us: int
    ) -> None:
        with self._write() as db:
            cursor = db.execute(
                "UPDATE agents SET clock_source = ?, clock_offset_us = ?, clock_delay_us = ?, "
                "clock_measured_us = ? WHERE name = ?",
                (source, offset_us, delay_us, measured_us, name),
            )
            if cursor.rowcount == 0:
                raise UnknownAgent(f"unknown agent {name!r}")

    def agents(self) -> list[AgentRecord]:
        return [_agent(row) for row in self._all(f"{_AGENT_SELECT} ORDER BY a.name")]

    def agent(self, name: str) -> AgentRecord:
        rows = self._all(f"{_AGENT_SELECT} WHERE a.name = ?", (name,))
        if not rows:
            raise UnknownAgent(f"unknown agent {name!r}")
        return _agent(rows[0])

    def agent_names(self) -> list[str]:
        return [row[0] for row in self._all("SELECT name FROM agents ORDER BY name")]

    # ------------------------------------------------------------ bundle blobs

    def blob_path(self, sha256: bytes) -> Path:
        return self.blobs.path(sha256)

    def partial_blob_path(self, sha256: bytes) -> Path:
        return self.blobs.partial_path(sha256)

    def commit_blob(self, temp_path: Path, sha256: bytes, verify: bool = True) -> Path:
        return self.blobs.commit(temp_path, sha256, verify)

    def has_blob(self, sha256: bytes) -> bool:
        return self.blobs.has(sha256)

    def prune_blobs(self, partial_max_age_s: float | None = None) -> int:
        """Delete blobs no desired bundle refers to; returns how many files went."""
        keep = {bytes(row[0]) for row in self._all("SELECT DISTINCT sha256 FROM desired_bundles")}
        return self.blobs.prune(keep, partial_max_age_s)

    def drop_blob_if_unused(self, sha256: bytes) -> bool:
        """Delete the blob of `sha256` when no desired bundle refers to it any more."""
        if self._all("SELECT 1 FROM desired_bundles WHERE sha256 = ? LIMIT 1", (bytes(sha256),)):
            return False
        self.blobs.path(sha256).unlink(missing_ok=True)
        return True

    # ------------------------------------------------------------ bundles

    def set_desired_bundle(
        self, agent: str, name: str, sha256: bytes, kind: BundleKind, size: int, now_us: int
    ) -> BundleRecord:
        validate_name("agent", agent)
        validate_name("bundle", name)
        record = BundleRecord(agent, name, bytes(sha256), BundleKind(kind), size, now_us)
        with self._write() as db:
            db.execute("INSERT OR REPLACE INTO desired_bundles VALUES (?, ?, ?, ?, ?, ?)",
                       (agent, name, record.sha256, int(record.kind), size, now_us))
        return record

    def remove_desired_bundle(self, agent: str, name: str) -> bool:
        with self._write() as db:
            cursor = db.execute("DELETE FROM desired_bundles WHERE agent = ? AND name = ?",
                                (agent, name))
        return cursor.rowcount > 0

    def desired_bundles(self, agent: str | Collection[str] | None = None) -> list[BundleRecord]:
        return self._bundles("desired_bundles", agent)

    def replace_reported_bundles(self, agent: str, bundles: Iterable[BundleRecord]) -> None:
        """What the agent says it holds, replacing its previous report."""
        rows = [(agent, b.name, bytes(b.sha256), int(b.kind), b.size, b.stored_us)
                for b in bundles]
        with self._write() as db:
            db.execute("DELETE FROM reported_bundles WHERE agent = ?", (agent,))
            db.executemany("INSERT OR REPLACE INTO reported_bundles VALUES (?, ?, ?, ?, ?, ?)",
                           rows)

    def reported_bundles(self, agent: str | Collection[str] | None = None) -> list[BundleRecord]:
        return self._bundles("reported_bundles", agent)

    def _bundles(self, table: str, agent: str | Collection[str] | None) -> list[BundleRecord]:
        where, params = agent_clause(agent)
        rows = self._all(
            f"SELECT {_BUNDLE_COLUMNS} FROM {table} WHERE {where} ORDER BY agent, name", params
        )
        return [_bundle(row) for row in rows]
