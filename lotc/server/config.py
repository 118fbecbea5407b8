"""The server's tunables, in one place, each named where it is used."""
from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from pathlib import Path

from lotc.net.address import Address, default_listen_addresses, loopback_listen_addresses
from lotc.timing import ServerTiming
from protocol.message_types import (
    DEFAULT_ADMIN_PORT,
    DEFAULT_AGENT_PORT,
    DEFAULT_CHUNK_SIZE,
    DEFAULT_MAX_BODY,
)


@dataclass(frozen=True)
class ServerConfig:
    db_path: Path = Path("lotc.db")
    listen: tuple[Address, ...] = tuple(default_listen_addresses(DEFAULT_AGENT_PORT))
    # consoles from this machine only unless --admin-listen says otherwise (DESIGN 7)
    admin_listen: tuple[Address, ...] = tuple(loopback_listen_addresses(DEFAULT_ADMIN_PORT))
    ssl_context: ssl.SSLContext | None = field(default=None, compare=False)
    ntp_listen: tuple[Address, ...] = ()  # answer SNTP here (a time source for the agents)
    ntp_local_stratum: int | None = None  # serve an unsynchronised host clock anyway (sntp.py)
    heartbeat_interval_s: float = 1.0  # agents send HEARTBEAT this often
    missed_heartbeats: int = 3  # silent this many intervals: the connection is presumed dead
    offline_grace_s: float = 2.0  # ...and only after this grace is the agent called offline
    # The server heartbeats each peer far less often than agents heartbeat it: enough for a
    # peer to tell a dead server from a quiet one, cheap with 10,000 agents. Sent to them
    # in TIMING (lotc/timing.py: the rule each side derives its silence limit from).
    server_ping_interval_s: float = 5.0
    handshake_timeout_s: float = 10.0
    send_timeout_s: float = 10.0  # a peer that does not read a frame in this time is cut off
    request_timeout_s: float = 15.0  # an agent's reply to a command
    upload_idle_timeout_s: float = 60.0  # a console that stops sending chunks
    max_body: int = DEFAULT_MAX_BODY
    max_bundle_bytes: int = 256 * 1024 * 1024
    chunk_size: int = DEFAULT_CHUNK_SIZE
    verdict_tick_s: float = 0.25  # how often heartbeats are flushed and silences judged
    seen_write_interval_s: float = 5.0  # how often last-seen times reach the database
    revocation_poll_s: float = 0.25  # how often the DB is checked for tokens revoked by the CLI
    no_exec: bool = False  # --no-exec: `exec` is refused (lotc/server/exec_run.py)

    @property
    def timing(self) -> ServerTiming:
        return ServerTiming(self.heartbeat_interval_s, self.missed_heartbeats,
                            self.offline_grace_s, self.upload_idle_timeout_s,
                            self.server_ping_interval_s)

    @property
    def silence_limit_s(self) -> float:
        return self.timing.agent_silence_limit_s
