"""Agent labels in the model: what each agent announced and what the console set.

The two sources are kept apart, not merged on write: an agent's reconnect
replaces only its own labels, so a console label survives it, and `unlabel`
brings the agent's own value back. Which one wins is lotc.selectors'
effective_labels, decided when read.
"""
from __future__ import annotations

import sqlite3
from collections.abc import Collection, Iterable, Mapping

from lotc.names import validate_name
from lotc.server.records import LabelRecord
from lotc.server.schema import Store, agent_clause

ANNOUNCED, CONSOLE = 0, 1  # labels.source


class LabelStore(Store):
    def replace_announced_labels(self, agent: str, labels: Mapping[str, str]) -> None:
        """What the agent said at connect replaces what it said before (none: all go)."""
        validate_name("agent", agent)
        with self._write() as db:
            db.execute("DELETE FROM labels WHERE agent = ? AND source = ?", (agent, ANNOUNCED))
            self._insert(db, agent, ANNOUNCED, labels)

    def set_console_labels(self, agent: str, labels: Mapping[str, str]) -> None:
        validate_name("agent", agent)
        with self._write() as db:
            self._insert(db, agent, CONSOLE, labels)

    def unset_console_labels(self, agent: str, keys: Iterable[str]) -> list[str]:
        """Remove these console labels; returns the keys that were set."""
        removed = []
        with self._write() as db:
            for key in keys:
                cursor = db.execute("DELETE FROM labels WHERE agent = ? AND source = ? AND key = ?",
                                    (agent, CONSOLE, key))
                if cursor.rowcount:
                    removed.append(key)
        return removed

    def labels(self, agent: str | Collection[str] | None = None) -> dict[str, LabelRecord]:
        """agent -> its labels, for the agents that have any."""
        where, params = agent_clause(agent)
        found: dict[str, LabelRecord] = {}
        for name, source, key, value in self._all(
                f"SELECT agent, source, key, value FROM labels WHERE {where} "
                f"ORDER BY agent, key", params):
            record = found.setdefault(name, LabelRecord(name))
            (record.console if source == CONSOLE else record.announced)[key] = value
        return found

    @staticmethod
    def _insert(db: sqlite3.Connection, agent: str, source: int,
                labels: Mapping[str, str]) -> None:
        db.executemany("INSERT OR REPLACE INTO labels (agent, source, key, value) "
                       "VALUES (?, ?, ?, ?)",
                       [(agent, source, key, value) for key, value in labels.items()])
