"""The model's history: events (exactly once) and stats samples, both bounded.

Theory of operation
-------------------
Agent events carry a per-agent sequence number. The agent sends them in
order and the server's WELCOME acknowledges every seq up to the highest one
stored, so "seq <= the highest stored" is exactly "already have it": a
replayed event is dropped. That high-water mark lives in `event_marks`, not
in the events, so pruning old events never lets a replay in twice. Events
the server makes have no seq and are always stored.

Retention is cheap by construction. Events: ids only grow (AUTOINCREMENT),
so keeping the newest N is `DELETE ... WHERE id <= max(id) - N`, run every
`prune_every` inserts and at open. Stats: a row count per agent is kept in
`stats_counts` as samples arrive; an agent past its bound by a tenth
(`stats_slack`) loses its oldest samples down to the bound, through the
(agent, time_us) index. Nothing ever counts rows.
"""
from __future__ import annotations

import json
import logging
import sqlite3
from collections import Counter
from collections.abc import Collection, Iterable
from dataclasses import dataclass, replace
from typing import Any

from lotc.errors import InvalidRequest
from lotc.server.records import EventRecord, StatsRecord
from lotc.server.schema import Store, agent_clause
from protocol.enums import EventKind, ProcessState

__all__ = ["HistoryStore", "Retention"]

logger = logging.getLogger(__name__)

_EVENT_COLUMNS = (
    "id, agent, seq, time_us, kind, process, old_state, new_state, exit_code, signal, message,"
    " schedule_id"
)
_COMPACT = (",", ":")


@dataclass(frozen=True)
class Retention:
    """How much history the model keeps."""

    stats_per_agent: int = 8640  # a day of samples at 10 s
    events_total: int = 100_000
    prune_every: int = 1000  # event inserts between two prunes

    def __post_init__(self) -> None:
        if min(self.stats_per_agent, self.events_total, self.prune_every) < 1:
            raise InvalidRequest("retention bounds must be at least 1")

    @property
    def stats_slack(self) -> int:
        """An agent is pruned once it holds this many samples beyond its bound."""
        return max(1, self.stats_per_agent // 10)


def _event(row: tuple[Any, ...]) -> EventRecord:
    (id_, agent, seq, time_us, kind, process, old_state, new_state, exit_code, signal,
     message, schedule_id) = row
    return EventRecord(id_, agent, seq, time_us, EventKind(kind), process,
                       ProcessState(old_state), ProcessState(new_state), exit_code, signal,
                       message, schedule_id)


class HistoryStore(Store):
    retention: Retention
    _events_since_prune: int = 0

    # ------------------------------------------------------------ events

    def add_event(self, record: EventRecord) -> EventRecord | None:
        """Store an event and return it with its id; None if this agent seq is stored already."""
        with self._write() as db:
            if record.seq is not None and not self._advance_mark(db, record.agent, record.seq):
                return None
            cursor = db.execute(
                f"INSERT INTO events ({_EVENT_COLUMNS}) "
                f"VALUES (NULL, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (record.agent, record.seq, record.time_us, int(record.kind), record.process,
                 int(record.old_state), int(record.new_state), record.exit_code, record.signal,
                 record.message, record.schedule_id),
            )
            self._events_since_prune += 1
            if self._events_since_prune >= self.retention.prune_every:
                self._prune_events(db)
        return replace(record, id=int(cursor.lastrowid or 0))

    @staticmethod
    def _advance_mark(db: sqlite3.Connection, agent: str, seq: int) -> bool:
        """Raise the agent's high-water mark to `seq`; False if it was already there."""
        cursor = db.execute(
            "INSERT INTO event_marks VALUES (?, ?) ON CONFLICT (agent) "
            "DO UPDATE SET last_seq = excluded.last_seq WHERE excluded.last_seq > last_seq",
            (agent, seq),
        )
        return cursor.rowcount > 0

    def last_event_seq(self, agent: str) -> int:
        """Highest event seq stored for `agent` (0: none): it acknowledges all up to it."""
        rows = self._all("SELECT last_seq FROM event_marks WHERE agent = ?", (agent,))
        return int(rows[0][0]) if rows else 0

    def events(
        self, agent: str | Collection[str] | None = None, since_us: int = 0, after_id: int = 0,
        limit: int = 100, newest: bool | None = None,
    ) -> list[EventRecord]:
        """Events of one agent, some agents or all, oldest (lowest id) first.

        Which `limit` of the matches: the newest ones (a listing's tail) by
        default, but the first ones after `after_id` when a cursor is given,
        so a follower paging forward never skips any. `newest` overrides.
        Order is arrival order (id): a replayed event arrives late but keeps
        its agent-side `time_us`, which `since_us` filters on.
        """
        if newest is None:
            newest = after_id == 0
        where, params = agent_clause(agent)
        rows = self._all(
            f"SELECT {_EVENT_COLUMNS} FROM events WHERE {where} AND time_us >= ? AND id > ? "
            f"ORDER BY id {'DESC' if newest else 'ASC'} LIMIT ?",
            [*params, since_us, after_id, max(0, limit)],
        )
        if newest:
            rows.reverse()
        return [_event(row) for row in rows]

    def _prune_events(self, db: sqlite3.Connection) -> None:
        self._events_since_prune = 0
        cursor = db.execute(
            "DELETE FROM events WHERE id <= (SELECT max(id) FROM events) - ?",
            (self.retention.events_total,),
        )
        if cursor.rowcount > 0:
            logger.debug("pruned %d old events", cursor.rowcount)

    # ------------------------------------------------------------ stats

    def add_stats(self, records: Iterable[StatsRecord]) -> int:
        """Store a batch of samples in one transaction; returns how many."""
        rows = [(r.agent, r.time_us, json.dumps(r.node, separators=_COMPACT),
                 json.dumps(r.processes, separators=_COMPACT)) for r in records]
        if not rows:
            return 0
        added = Counter(row[0] for row in rows)
        with self._write() as db:
            db.executemany("INSERT INTO stats (agent, time_us, node, processes) "
                           "VALUES (?, ?, ?, ?)", rows)
            db.executemany("INSERT INTO stats_counts VALUES (?, ?) ON CONFLICT (agent) "
                           "DO UPDATE SET n = n + excluded.n", added.items())
            where, params = agent_clause(added.keys())
            over = db.execute(f"SELECT agent, n FROM stats_counts WHERE {where} AND n > ?",
                              [*params, self.retention.stats_per_agent
                               + self.retention.stats_slack]).fetchall()
            for agent, count in over:
                self._prune_stats(db, agent, count)
        return len(rows)

    def _prune_stats(self, db: sqlite3.Connection, agent: str, count: int) -> None:
        excess = count - self.retention.stats_per_agent
        deleted = db.execute(
            "DELETE FROM stats WHERE id IN (SELECT id FROM stats WHERE agent = ? "
            "ORDER BY time_us, id LIMIT ?)",
            (agent, excess),
        ).rowcount
        db.execute("UPDATE stats_counts SET n = n - ? WHERE agent = ?", (deleted, agent))

    def stats_history(self, agent: str, since_us: int = 0, limit: int = 1000) -> list[StatsRecord]:
        """The newest `limit` samples of `agent` taken at or after `since_us`, oldest first."""
        rows = self._all(
            "SELECT agent, time_us, node, processes FROM stats WHERE agent = ? AND time_us >= ? "
            "ORDER BY time_us DESC, id DESC LIMIT ?",
            (agent, since_us, max(0, limit)),
        )
        rows.reverse()
        return [StatsRecord(a, t, json.loads(node), json.loads(procs))
                for a, t, node, procs in rows]
