"""The supervisor's state on disk: one small JSON file per process, replaced atomically.

Layout under the state dir::

    agent.lock              flock'ed by the running supervisor: one per state dir
    processes/<name>.json   spec, desired state, pid + start time, notify address...

A file per process keeps every write O(1) however many processes there are
(a single file would be rewritten whole on each change of any process). A
write goes to a temporary file, is fsync'ed, then renamed over the old one:
any reader, including a new agent after a crash, sees either the old record
or the new one, never a mix. The directory is not fsync'ed per write: after
a power loss a rename may be undone (the previous record comes back); every
process died with the power anyway, and the server's reconciliation brings
the last changes back, so we do not pay a second flush on every state change.

Writes run in worker threads, several at once; each carries a sequence
number and a write older than the last one done for that name is dropped,
so a slow thread can never put back a stale record (or resurrect a removed
one).
"""
from __future__ import annotations

import fcntl
import json
import logging
import os
import threading
from pathlib import Path
from typing import Any

from lotc.errors import Conflict

__all__ = ["StateFiles"]

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1


class StateFiles:
    def __init__(self, state_dir: Path) -> None:
        self.root = Path(state_dir) / "processes"
        self._lock_path = Path(state_dir) / "agent.lock"
        self._lock_fd: int | None = None
        self._guard = threading.Lock()
        self._last_seq: dict[str, int] = {}
        self._name_locks: dict[str, threading.Lock] = {}

    # ---- ownership of the state dir --------------------------------------------------
    def acquire(self) -> None:
        """Take the state dir for this supervisor, or raise Conflict if another holds it."""
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise Conflict(f"another supervisor is using {self._lock_path.parent}") from None
        self._lock_fd = fd

    def release(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing drops the flock
            self._lock_fd = None

    # ---- records ---------------------------------------------------------------------
    def _path(self, name: str) -> Path:
        return self.root / f"{name}.json"

    def _name_lock(self, name: str) -> threading.Lock:
        with self._guard:
            return self._name_locks.setdefault(name, threading.Lock())

    def _claim(self, name: str, seq: int) -> bool:
        """True if `seq` is newer than anything written for `name` (caller holds its lock)."""
        if seq <= self._last_seq.get(name, -1):
            return False
        self._last_seq[name] = seq
        return True

    def save(self, name: str, seq: int, record: dict[str, Any]) -> None:
        """Atomically replace the record of `name`. Blocking; safe from several threads."""
        data = json.dumps({"version": FORMAT_VERSION, **record}, sort_keys=True).encode()
        with self._name_lock(name):
            if not self._claim(name, seq):
                return
            tmp = self.root / f".{name}.json.tmp"
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self._path(name))

    def delete(self, name: str, seq: int) -> None:
        with self._name_lock(name):
            if self._claim(name, seq):
                self._path(name).unlink(missing_ok=True)

    def load_all(self) -> list[dict[str, Any]]:
        """Every readable record; a broken file is logged and skipped, never fatal."""
        records = []
        for path in sorted(self.root.glob("*.json")):
            try:
                record = json.loads(path.read_bytes())
                if record.get("version") != FORMAT_VERSION:
                    raise ValueError(f"unknown format version {record.get('version')!r}")
            except (OSError, ValueError) as exc:
                logger.error("ignoring unreadable process record %s: %s", path, exc)
                continue
            records.append(record)
        for tmp in self.root.glob(".*.tmp"):  # left by a crash mid-write
            tmp.unlink(missing_ok=True)
        return records
