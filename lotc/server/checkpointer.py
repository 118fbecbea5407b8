"""SQLite's WAL checkpoints, in a worker thread instead of on the event loop.

In WAL mode every commit appends to the -wal file, and by default the commit that
takes it past 1,000 pages also copies it back into the database and fsyncs it: on
the event loop, where with 10,000 agents that made one verdict tick in three take
10-20 ms and delayed every console request behind it (bench.server_load;
docs/performance.md "Server"). The server's connection now checkpoints only as a
safety net (SAFETY_NET_PAGES, should this task stop keeping up), and this task asks
for a PASSIVE checkpoint every INTERVAL_S from a connection of its own in a worker
thread. sqlite3 releases the GIL while SQLite works, so the loop runs meanwhile, and
a PASSIVE checkpoint never blocks the server's reads or writes (it copies what no
reader still needs, and the next one finishes the job).
"""
from __future__ import annotations

import logging
import sqlite3

import trio

from lotc.server.model import Model

logger = logging.getLogger(__name__)

INTERVAL_S = 2.0
SAFETY_NET_PAGES = 20_000  # 80 MB of WAL with 4 KiB pages
DEFAULT_AUTOCHECKPOINT_PAGES = 1000  # SQLite's


async def run_checkpoints(model: Model,
                          task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    # The connection moves between the worker threads trio lends; one uses it at a time.
    conn = sqlite3.connect(model.path, isolation_level=None, check_same_thread=False,
                           timeout=5.0)
    model.set_wal_autocheckpoint(SAFETY_NET_PAGES)
    task_status.started()
    try:
        while True:
            await trio.sleep(INTERVAL_S)
            try:
                await trio.to_thread.run_sync(_checkpoint, conn, abandon_on_cancel=False)
            except sqlite3.Error as exc:  # the server goes on; its own net still holds
                logger.warning("WAL checkpoint failed: %s", exc)
    finally:
        model.set_wal_autocheckpoint(DEFAULT_AUTOCHECKPOINT_PAGES)
        conn.close()


def _checkpoint(conn: sqlite3.Connection) -> tuple[int, int, int]:
    """(busy, WAL pages, pages copied back): see PRAGMA wal_checkpoint."""
    return conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
