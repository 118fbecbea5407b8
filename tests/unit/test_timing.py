"""The timing contract: one rule from beat intervals to silence limits (lotc/timing.py)."""
from __future__ import annotations

from pathlib import Path

from lotc.server.config import ServerConfig
from lotc.timing import ServerTiming, silence_limit_s


def test_rule_is_missed_beats_of_the_peer_interval() -> None:
    assert silence_limit_s(1.0, 3) == 3.0
    assert silence_limit_s(0.5, 4) == 2.0


def test_defaults_give_the_documented_timeline() -> None:
    timing = ServerConfig(db_path=Path("unused.db")).timing
    assert timing.agent_silence_limit_s == 3.0
    assert timing.offline_after_s == 5.0
    assert timing.backstop_s == 8.0
    assert timing.console_silence_limit_s == 63.0


def test_server_config_follows_its_flags() -> None:
    config = ServerConfig(db_path=Path("unused.db"), heartbeat_interval_s=0.5,
                          missed_heartbeats=4, offline_grace_s=1.0)
    assert config.silence_limit_s == 2.0
    assert config.timing == ServerTiming(0.5, 4, 1.0, config.upload_idle_timeout_s)
    assert config.timing.backstop_s == 5.0


def test_clients_keep_their_rule_for_the_servers_silence() -> None:
    from admin_console.client import SERVER_SILENCE_LIMIT_S
    from lotc.timing import CONSOLE_SERVER_SILENCE_S, agent_server_silence_s

    assert agent_server_silence_s(1.0) == 15.0
    assert agent_server_silence_s(2.0) == 30.0
    assert SERVER_SILENCE_LIMIT_S == CONSOLE_SERVER_SILENCE_S == 30.0
