"""The server's own view during bench.server_load, read from outside it: its database
(agents online, heard from lately, stats rows stored) and its sockets' unread bytes."""
from __future__ import annotations

import sqlite3
import subprocess
import time
from pathlib import Path

from lotc.server.config import ServerConfig
from lotc.server.controller import SEEN_ROWS_PER_TICK

SS_TIMEOUT_S = 20.0
DB_BUSY_TIMEOUT_S = 5.0


def heard_within_s(agents: int) -> float:
    """How fresh the database's last-seen times are: the server writes them every
    seen_write_interval_s (5 s), SEEN_ROWS_PER_TICK rows a verdict tick, plus 2 s."""
    config = ServerConfig()
    spread = agents / SEEN_ROWS_PER_TICK * config.verdict_tick_s
    return config.seen_write_interval_s + spread + 2.0


class ServerView:
    """Reads the server's database (WAL: readers never block its writer) and its sockets."""

    def __init__(self, db: Path, agent_port: int) -> None:
        self.conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=DB_BUSY_TIMEOUT_S)
        self.agent_port = agent_port

    def online(self) -> int:
        return int(self.conn.execute("SELECT count(*) FROM agents WHERE online = 1").fetchone()[0])

    def heard_within(self, seconds: float) -> int:
        since = time.time_ns() // 1000 - int(seconds * 1e6)
        return int(self.conn.execute(
            "SELECT count(*) FROM agents WHERE online = 1 AND last_seen_us >= ?", (since,)
        ).fetchone()[0])

    def stats_rows(self) -> int:
        return int(self.conn.execute("SELECT coalesce(sum(n), 0) FROM stats_counts").fetchone()[0])

    def unread_bytes(self) -> tuple[int, int]:
        """(sum, max) of Recv-Q over the server's agent sockets: bytes it has not read yet."""
        out = subprocess.run(
            ["ss", "-tnH", "state", "established", f"( sport = :{self.agent_port} )"],
            capture_output=True, text=True, timeout=SS_TIMEOUT_S, check=False).stdout
        queues = [int(line.split()[0]) for line in out.splitlines() if line.strip()]
        return sum(queues), max(queues, default=0)

    def close(self) -> None:
        self.conn.close()
