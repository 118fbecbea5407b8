"""Events and stats in the server's model (real SQLite): stored once, queried, retained."""
from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

from lotc.server.model import Model, Retention
from protocol.enums import EventKind
from tests.model_helpers import (  # noqa: F401  (fixtures)
    db_path_fixture,
    event,
    model_fixture,
    reopen,
    stats,
)

# ---------------------------------------------------------------- events


def test_agent_events_are_stored_exactly_once(model: Model) -> None:
    first = model.add_event(event(seq=1))
    assert first is not None and first.id > 0
    assert model.add_event(event(seq=1)) is None  # replayed after a reconnect
    assert model.add_event(event(seq=2)) is not None
    assert model.add_event(event(seq=2, message="replay")) is None
    assert model.add_event(event(agent="web2", seq=1)) is not None  # numbered per agent
    assert model.last_event_seq("web1") == 2 and model.last_event_seq("web2") == 1
    assert model.last_event_seq("web3") == 0
    assert [(e.agent, e.seq) for e in model.events()] == [("web1", 1), ("web1", 2), ("web2", 1)]


def test_server_events_are_always_stored(model: Model) -> None:
    one = model.add_event(event(seq=None, kind=EventKind.AGENT_OFFLINE, message="gone"))
    two = model.add_event(event(seq=None, kind=EventKind.AGENT_OFFLINE, message="gone"))
    assert one is not None and two is not None and one.id < two.id
    assert model.last_event_seq("web1") == 0
    assert [e.seq for e in model.events()] == [None, None]


def test_last_event_seq_shows_in_the_agent_record(model: Model) -> None:
    model.agent_connected("web1", "h", "a", "v", now_us=1)
    model.add_event(event(seq=41))
    assert model.agent("web1").last_event_seq == 41


def test_event_queries(model: Model) -> None:
    for i in range(10):
        model.add_event(event(agent=f"a{i % 2}", seq=i + 1, time_us=100 * i, message=str(i)))
    everything = model.events(limit=100)
    assert [e.message for e in everything] == [str(i) for i in range(10)]  # oldest first
    assert [e.message for e in model.events(limit=3)] == ["7", "8", "9"]  # the newest three
    assert [e.message for e in model.events("a1")] == ["1", "3", "5", "7", "9"]
    assert [e.message for e in model.events(["a0"], limit=2)] == ["6", "8"]
    assert [e.message for e in model.events(since_us=700)] == ["7", "8", "9"]
    cursor = everything[3].id
    assert [e.message for e in model.events(after_id=cursor, limit=2)] == ["4", "5"]  # paging
    assert [e.message for e in model.events(after_id=cursor, limit=2, newest=True)] == ["8", "9"]
    assert model.events(limit=0) == []
    assert everything[0] == replace(event(agent="a0", seq=1, time_us=0, message="0"),
                                    id=everything[0].id)


def test_event_retention_holds_and_replays_stay_out(db_path: Path) -> None:
    model = Model(db_path, Retention(events_total=50, prune_every=10))
    try:
        for seq in range(1, 301):
            model.add_event(event(seq=seq, message=str(seq)))
        kept = model.events(limit=1000)
        assert 50 <= len(kept) <= 60
        assert kept[-1].message == "300"
        assert model.add_event(event(seq=5)) is None  # pruned long ago, still a duplicate
        assert model.last_event_seq("web1") == 300
    finally:
        model.close()


def test_opening_with_a_smaller_bound_prunes_at_once(db_path: Path) -> None:
    model = Model(db_path)
    for seq in range(1, 101):
        model.add_event(event(seq=seq))
    model = reopen(model, Retention(events_total=20))
    try:
        assert len(model.events(limit=1000)) == 20
    finally:
        model.close()


# ---------------------------------------------------------------- stats


def test_stats_history(model: Model) -> None:
    model.add_stats([stats("web1", t) for t in (30, 10, 20)] + [stats("web2", 15)])
    assert model.add_stats([]) == 0
    history = model.stats_history("web1")
    assert [s.time_us for s in history] == [10, 20, 30]  # oldest first
    assert history[0] == stats("web1", 10)
    assert [s.time_us for s in model.stats_history("web1", since_us=20)] == [20, 30]
    assert [s.time_us for s in model.stats_history("web1", limit=2)] == [20, 30]  # the newest
    assert model.stats_history("nobody") == []


def test_stats_retention_per_agent(db_path: Path) -> None:
    model = Model(db_path, Retention(stats_per_agent=20))
    try:
        for t in range(300):
            model.add_stats([stats("web1", t), stats("web2", t)])
        model.add_stats([stats("web3", 0)])
        for agent in ("web1", "web2"):
            history = model.stats_history(agent, limit=1000)
            assert 20 <= len(history) <= 20 + model.retention.stats_slack
            assert history[-1].time_us == 299
        assert len(model.stats_history("web3")) == 1  # a quiet agent keeps its history
        counted = dict(model._all("SELECT agent, n FROM stats_counts"))
        actual = dict(model._all("SELECT agent, count(*) FROM stats GROUP BY agent"))
        assert counted == actual
    finally:
        model.close()


def test_a_big_stats_batch_is_fast(model: Model) -> None:
    batch = [stats(f"node-{i:05d}", 1) for i in range(2000)]
    started = time.perf_counter()
    assert model.add_stats(batch) == 2000
    assert time.perf_counter() - started < 1.0
