"""The timing contract: one rule from beat intervals to silence limits (lotc/timing.py)."""
from __future__ import annotations

from pathlib import Path

import pytest

from lotc import timing
from lotc.server.config import ServerConfig
from lotc.timing import LinkTiming, ServerTiming, silence_limit_s
from protocol.codec import FrameDecoder, encode
from protocol.enums import Role
from protocol.messages import Hello, Timing


def test_rule_is_missed_beats_of_the_peer_interval() -> None:
    assert silence_limit_s(1.0, 3) == 3.0
    assert silence_limit_s(0.5, 4) == 2.0


def test_defaults_give_the_documented_timeline() -> None:
    rule = ServerConfig(db_path=Path("unused.db")).timing
    assert rule.agent_silence_limit_s == 3.0
    assert rule.offline_after_s == 5.0
    assert rule.backstop_s == 8.0
    assert rule.console_silence_limit_s == 63.0
    # and the other way: both clients give the server (5 s ping + 1 s beat) x 3
    assert rule.link(Role.AGENT).server_silence_limit_s == 18.0
    assert rule.link(Role.ADMIN).server_silence_limit_s == 18.0


def test_server_config_follows_its_flags() -> None:
    config = ServerConfig(db_path=Path("unused.db"), heartbeat_interval_s=0.5,
                          missed_heartbeats=4, offline_grace_s=1.0, server_ping_interval_s=0.25)
    assert config.silence_limit_s == 2.0
    assert config.timing == ServerTiming(0.5, 4, 1.0, config.upload_idle_timeout_s, 0.25)
    assert config.timing.backstop_s == 5.0


@pytest.mark.parametrize("role", list(Role))
def test_the_client_learns_from_timing_what_the_server_applies(role: Role) -> None:
    """Both ends of the contract from one set of numbers, through the real codec."""
    rule = ServerTiming(0.2, 3, 0.5, 60.0, ping_s=0.5)
    [frame] = FrameDecoder().feed(encode(rule.message_for(role)))
    assert isinstance(frame.body, Timing)
    learned = LinkTiming.from_message(frame.body)
    assert learned == rule.link(role)
    assert learned.silence_limit_s == pytest.approx(rule.silence_limit_for(role))
    assert learned.server_silence_limit_s == pytest.approx((0.5 + 0.2) * 3)


def test_silence_limits_per_role() -> None:
    rule = ServerTiming(1.0, 3, 2.0, 60.0, ping_s=5.0)
    assert rule.message_for(Role.AGENT) == Timing(heartbeat_ms=1000, ping_ms=5000, missed=3,
                                                  silence_limit_ms=3000)
    assert rule.message_for(Role.ADMIN).silence_limit_ms == 63000


@pytest.mark.parametrize("bad", [Timing(heartbeat_ms=1000, ping_ms=0, missed=3),
                                 Timing(heartbeat_ms=1000, ping_ms=5000, missed=0)])
def test_a_timing_that_makes_no_limit_is_refused_with_words(bad: Timing) -> None:
    with pytest.raises(ValueError, match="gives no silence limit"):
        LinkTiming.from_message(bad)


def test_only_clients_announcing_timing_get_it(tmp_path: Path) -> None:
    from lotc.server.controller import Controller
    from lotc.server.model import Model

    model = Model(tmp_path / "t.db")
    try:
        ctl = Controller(model, ServerConfig(db_path=tmp_path / "t.db"))
        old = Hello(role=Role.AGENT, name="n1", capabilities=("bundles",))
        new = Hello(role=Role.AGENT, name="n1", capabilities=("bundles", timing.CAPABILITY))
        assert ctl.timing_for(old) is None
        assert ctl.timing_for(new) == ctl.config.timing.message_for(Role.AGENT)
    finally:
        model.close()


def test_clients_of_an_older_server_keep_their_rule() -> None:
    from admin_console.client import SERVER_SILENCE_LIMIT_S

    assert timing.legacy_agent_server_silence_s(1.0) == 15.0
    assert timing.legacy_agent_server_silence_s(2.0) == 30.0
    assert SERVER_SILENCE_LIMIT_S == timing.LEGACY_CONSOLE_SERVER_SILENCE_S == 30.0
