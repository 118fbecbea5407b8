"""The server's model against a real SQLite file: every operation, restarts, two processes."""
from __future__ import annotations

import hashlib
import hmac
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from lotc.errors import (
    ChecksumMismatch,
    Conflict,
    InvalidRequest,
    UnknownAgent,
    UnknownProcess,
    UnknownSchedule,
)
from lotc.server.model import Model, Retention
from lotc.server.records import (
    BundleRecord,
    EventRecord,
    ProcessSpecRecord,
    ProcessStatusRecord,
    ScheduleRecord,
    StatsRecord,
)
from protocol.enums import (
    Action,
    BundleKind,
    DesiredState,
    EventKind,
    ProcessState,
    RestartPolicy,
    Role,
    ScheduleKind,
)

SHA_A = hashlib.sha256(b"bundle a").digest()
SHA_B = hashlib.sha256(b"bundle b").digest()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "lotc.db"


@pytest.fixture
def model(db_path: Path) -> Iterator[Model]:
    m = Model(db_path)
    try:
        yield m
    finally:
        m.close()


def reopen(model: Model, retention: Retention | None = None) -> Model:
    """A server restart: close the file and open it again."""
    model.close()
    return Model(model.path, retention or model.retention)


def spec(agent: str = "web1", name: str = "api", **changes: object) -> ProcessSpecRecord:
    base = ProcessSpecRecord(
        agent=agent, name=name, bundle="app", argv=("python3", "-m", "app", "--port=80"),
        env=(("MODE", "prod"), ("EMPTY", "")), cwd="", restart=RestartPolicy.ON_FAILURE,
        liveness_ms=5000, grace_ms=3000, backoff_base_ms=100, backoff_cap_ms=30_000,
        restart_limit=5, restart_window_s=60, desired=DesiredState.RUNNING, revision=0,
        updated_us=1_000,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def status(agent: str = "web1", name: str = "api", **changes: object) -> ProcessStatusRecord:
    base = ProcessStatusRecord(
        agent=agent, name=name, bundle="app", revision=1, state=ProcessState.RUNNING, pid=4242,
        exit_code=-1, exit_signal=0, restarts=0, started_us=10, last_liveness_us=20,
        status="serving", updated_us=30,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def event(agent: str = "web1", seq: int | None = 1, **changes: object) -> EventRecord:
    base = EventRecord(
        id=0, agent=agent, seq=seq, time_us=1_000, kind=EventKind.PROCESS_STATE, process="api",
        old_state=ProcessState.STARTING, new_state=ProcessState.RUNNING, exit_code=-1, signal=0,
        message="",
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def schedule(agent: str = "web1", **changes: object) -> ScheduleRecord:
    base = ScheduleRecord(
        id=0, agent=agent, process="api", action=Action.RESTART, signal="",
        kind=ScheduleKind.CRON, cron="0 3 * * *", tz="Europe/Paris", at_us=0,
        next_fire_us=5_000, last_fire_us=0, created_us=100,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def stats(agent: str, time_us: int) -> StatsRecord:
    return StatsRecord(agent, time_us, {"cpu_percent": 12.5, "mem_used": 1 << 30},
                       [{"name": "api", "pid": 7, "rss": 123, "cpu_percent": 1.5}])


# ---------------------------------------------------------------- tokens


def test_token_is_returned_once_and_stored_only_as_its_digest(model: Model, db_path: Path) -> None:
    token = model.create_token(Role.AGENT, "web1", now_us=10)
    assert len(token) >= 40
    key = model.token_key(Role.AGENT, "web1")
    assert key == hashlib.sha256(token.encode()).digest()
    for file in db_path.parent.glob("lotc.db*"):  # the database and its WAL
        assert token.encode() not in file.read_bytes()
    assert model.token_key(Role.ADMIN, "web1") is None  # bound to its role
    assert model.token_key(Role.AGENT, "nobody") is None


def test_token_key_verifies_the_clients_challenge_response(model: Model) -> None:
    token = model.create_token(Role.ADMIN, "alice", now_us=10)
    nonce = os.urandom(32)
    message = nonce + bytes([Role.ADMIN]) + b"alice"
    client_key = hashlib.sha256(token.encode()).digest()
    client_mac = hmac.new(client_key, message, hashlib.sha256).digest()
    server_key = model.token_key(Role.ADMIN, "alice")
    assert server_key is not None
    assert hmac.compare_digest(client_mac, hmac.new(server_key, message, hashlib.sha256).digest())


def test_token_names_are_unique_across_roles_until_revoked(model: Model) -> None:
    first = model.create_token(Role.AGENT, "ops", now_us=10)
    with pytest.raises(Conflict, match="revoke it first"):
        model.create_token(Role.ADMIN, "ops", now_us=11)
    with pytest.raises(Conflict):
        model.create_token(Role.AGENT, "ops", now_us=11)
    assert model.revoke_token("ops", now_us=20)
    assert not model.revoke_token("ops", now_us=21)  # nothing live left to revoke
    assert model.token_key(Role.AGENT, "ops") is None
    assert model.is_revoked("ops")
    second = model.create_token(Role.ADMIN, "ops", now_us=30)
    assert second != first
    assert not model.is_revoked("ops")
    assert model.token_key(Role.ADMIN, "ops") == hashlib.sha256(second.encode()).digest()
    [record] = model.tokens()
    assert (record.name, record.role, record.created_us, record.revoked_us) == \
        ("ops", Role.ADMIN, 30, None)


def test_tokens_lists_revocations(model: Model) -> None:
    model.create_token(Role.AGENT, "b", now_us=1)
    model.create_token(Role.ADMIN, "a", now_us=2)
    model.revoke_token("b", now_us=5)
    assert [(t.name, t.role, t.revoked_us) for t in model.tokens()] == [
        ("a", Role.ADMIN, None), ("b", Role.AGENT, 5)
    ]
    assert model.is_revoked("never-issued")


def test_token_name_is_validated(model: Model) -> None:
    with pytest.raises(InvalidRequest, match="agent name"):
        model.create_token(Role.AGENT, "../etc", now_us=1)


def test_revocation_by_another_process_is_noticed(model: Model, db_path: Path) -> None:
    model.create_token(Role.AGENT, "web1", now_us=1)
    before = model.data_version()
    assert model.data_version() == before  # nothing changed: cheap to poll
    cli = Model(db_path)  # `lotc token revoke` while the server runs
    try:
        assert cli.revoke_token("web1", now_us=2)
    finally:
        cli.close()
    assert model.data_version() != before
    assert model.is_revoked("web1")
    assert model.token_key(Role.AGENT, "web1") is None


def test_a_second_writer_waits_for_the_first(model: Model, db_path: Path) -> None:
    """Another process holding the write lock a moment: the model waits instead of failing."""
    other = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False)
    try:
        other.execute("BEGIN IMMEDIATE")
        other.execute("INSERT INTO tokens VALUES ('x', 1, x'00', 1, NULL)")
        release = threading.Timer(0.2, other.execute, ("COMMIT",))
        release.start()
        started = time.monotonic()
        model.create_token(Role.AGENT, "y", now_us=1)
        assert time.monotonic() - started >= 0.15
        release.join()
        assert {t.name for t in model.tokens()} == {"x", "y"}
    finally:
        other.close()


# ---------------------------------------------------------------- agents


def test_agent_connected_inserts_then_updates(model: Model) -> None:
    first = model.agent_connected("web1", "host-a", "127.0.0.1:5000", "lotc 0.1", now_us=100)
    assert first.online and first.first_seen_us == first.connected_us == first.last_seen_us == 100
    model.agent_offline("web1", now_us=150)
    again = model.agent_connected("web1", "host-b", "[::1]:6000", "lotc 0.2", now_us=200)
    assert again.online
    assert (again.hostname, again.address, again.version) == ("host-b", "[::1]:6000", "lotc 0.2")
    assert again.first_seen_us == 100 and again.connected_us == 200
    assert model.agent("web1") == again
    assert model.agent_names() == ["web1"]


def test_unknown_agent(model: Model) -> None:
    with pytest.raises(UnknownAgent, match="nope"):
        model.agent("nope")
    with pytest.raises(UnknownAgent):
        model.set_agent_clock("nope", "pool.ntp.org", 1, 2, 3)
    assert not model.agent_offline("nope", now_us=1)
    with pytest.raises(InvalidRequest):
        model.agent_connected("bad name", "h", "a", "v", now_us=1)


def test_agent_seen_is_batched_and_ignores_unknown_names(model: Model) -> None:
    for i in range(3):
        model.agent_connected(f"a{i}", "h", "addr", "v", now_us=10)
    model.agent_seen(["a0", "a2", "ghost"], now_us=50)
    model.agent_seen(["a0"], now_us=40)  # a late batch never moves last-seen backwards
    assert [a.last_seen_us for a in model.agents()] == [50, 10, 50]


def test_agent_seen_for_thousands_of_agents_is_one_cheap_write(model: Model) -> None:
    names = [f"node-{i:05d}" for i in range(5000)]
    for name in names[:50]:
        model.agent_connected(name, "h", "addr", "v", now_us=1)
    started = time.perf_counter()
    model.agent_seen(names, now_us=99)
    assert time.perf_counter() - started < 0.5
    assert {a.last_seen_us for a in model.agents()} == {99}


def test_offline_verdicts(model: Model) -> None:
    model.agent_connected("a", "h", "addr", "v", now_us=10)
    model.agent_connected("b", "h", "addr", "v", now_us=10)
    assert model.agent_offline("a", now_us=20)
    assert not model.agent_offline("a", now_us=21)  # already offline
    assert model.agent("a").last_seen_us == 10  # the last time it was heard, not the verdict
    assert model.mark_all_offline(now_us=30) == 1
    assert not any(a.online for a in model.agents())


def test_agent_clock(model: Model) -> None:
    model.agent_connected("a", "h", "addr", "v", now_us=10)
    model.set_agent_clock("a", "pool.ntp.org", offset_us=-1500, delay_us=800, measured_us=12)
    record = model.agent("a")
    assert (record.clock_source, record.clock_offset_us, record.clock_delay_us,
            record.clock_measured_us) == ("pool.ntp.org", -1500, 800, 12)


# ---------------------------------------------------------------- blobs


def test_blob_commit_verifies_the_hash(model: Model, db_path: Path) -> None:
    data = b"#!/bin/sh\necho hi\n" * 100
    sha = hashlib.sha256(data).digest()
    partial = model.partial_blob_path(sha)
    assert partial.parent == db_path.parent / "lotc-blobs"
    partial.write_bytes(data)
    assert not model.has_blob(sha)
    final = model.commit_blob(partial, sha)
    assert final == model.blob_path(sha) == db_path.parent / "lotc-blobs" / sha.hex()
    assert final.read_bytes() == data and model.has_blob(sha) and not partial.exists()


def test_blob_with_the_wrong_hash_never_becomes_a_blob(model: Model) -> None:
    partial = model.partial_blob_path(SHA_A)
    partial.write_bytes(b"not bundle a")
    with pytest.raises(ChecksumMismatch):
        model.commit_blob(partial, SHA_A)
    assert not model.has_blob(SHA_A) and not partial.exists()
    with pytest.raises(InvalidRequest, match="32 bytes"):
        model.blob_path(b"short")


def test_prune_blobs_keeps_what_a_desired_bundle_refers_to(model: Model) -> None:
    for content in (b"bundle a", b"bundle b"):
        sha = hashlib.sha256(content).digest()
        path = model.partial_blob_path(sha)
        path.write_bytes(content)
        model.commit_blob(path, sha)
    model.set_desired_bundle("web1", "app", SHA_A, BundleKind.FILE, 8, now_us=1)
    model.set_desired_bundle("web2", "app", SHA_A, BundleKind.FILE, 8, now_us=1)
    fresh = model.partial_blob_path(SHA_B)
    fresh.write_bytes(b"half")
    stale = model.partial_blob_path(hashlib.sha256(b"old").digest())
    stale.write_bytes(b"abandoned upload")
    os.utime(stale, (time.time() - 7200, time.time() - 7200))
    assert model.prune_blobs() == 1  # blob b only; partials are left alone by default
    assert model.has_blob(SHA_A) and not model.has_blob(SHA_B)
    assert model.prune_blobs(partial_max_age_s=3600) == 1  # the abandoned upload
    assert fresh.exists() and not stale.exists()
    model.remove_desired_bundle("web1", "app")
    assert model.prune_blobs() == 0  # web2 still wants it
    model.remove_desired_bundle("web2", "app")
    assert model.prune_blobs() == 1 and not model.has_blob(SHA_A)


def test_opening_the_model_creates_no_blob_directory(model: Model, db_path: Path) -> None:
    model.create_token(Role.AGENT, "a", now_us=1)
    assert not (db_path.parent / "lotc-blobs").exists()
    assert model.prune_blobs() == 0


# ---------------------------------------------------------------- bundles


def test_desired_bundles(model: Model) -> None:
    model.set_desired_bundle("web1", "app", SHA_A, BundleKind.TAR, 100, now_us=1)
    model.set_desired_bundle("web2", "app", SHA_A, BundleKind.TAR, 100, now_us=1)
    replaced = model.set_desired_bundle("web1", "app", SHA_B, BundleKind.FILE, 7, now_us=2)
    assert model.desired_bundles("web1") == [replaced]
    assert replaced == BundleRecord("web1", "app", SHA_B, BundleKind.FILE, 7, 2)
    assert [b.agent for b in model.desired_bundles()] == ["web1", "web2"]
    assert [b.agent for b in model.desired_bundles({"web2", "web9"})] == ["web2"]
    assert model.remove_desired_bundle("web1", "app")
    assert not model.remove_desired_bundle("web1", "app")
    assert model.desired_bundles("web1") == []
    with pytest.raises(InvalidRequest, match="bundle name"):
        model.set_desired_bundle("web1", "a/b", SHA_A, BundleKind.FILE, 1, now_us=1)


def test_reported_bundles_replace_the_previous_report(model: Model) -> None:
    held = [BundleRecord("", "app", SHA_A, BundleKind.FILE, 8, 5),
            BundleRecord("", "lib", SHA_B, BundleKind.TAR, 9, 6)]
    model.replace_reported_bundles("web1", held)
    model.replace_reported_bundles("web2", held[:1])
    assert [(b.agent, b.name) for b in model.reported_bundles("web1")] == [("web1", "app"),
                                                                          ("web1", "lib")]
    model.replace_reported_bundles("web1", held[1:])
    assert [b.name for b in model.reported_bundles("web1")] == ["lib"]
    assert len(model.reported_bundles()) == 2
    model.replace_reported_bundles("web1", [])
    assert model.reported_bundles("web1") == []


# ---------------------------------------------------------------- desired processes


def test_put_process_round_trips_and_assigns_increasing_revisions(model: Model) -> None:
    first = model.put_process(spec())
    assert first.revision >= 1
    assert model.process("web1", "api") == first
    assert first.argv == ("python3", "-m", "app", "--port=80")
    assert first.env == (("MODE", "prod"), ("EMPTY", ""))
    other = model.put_process(spec(agent="web2"))
    again = model.put_process(spec(argv=("sleep", "1")))
    assert first.revision < other.revision < again.revision
    assert model.process("web1", "api").argv == ("sleep", "1")


def test_revision_never_repeats_after_removal_or_restart(model: Model) -> None:
    high = model.put_process(spec()).revision
    assert model.remove_process("web1", "api")
    assert not model.remove_process("web1", "api")
    model = reopen(model)
    try:
        assert model.put_process(spec()).revision > high
    finally:
        model.close()


def test_set_desired_state_keeps_the_revision(model: Model) -> None:
    stored = model.put_process(spec())
    stopped = model.set_desired_state("web1", "api", DesiredState.STOPPED)
    assert stopped == replace(stored, desired=DesiredState.STOPPED)
    exited = model.set_desired_state("web1", "api", DesiredState.EXITED, now_us=9_999)
    assert exited.revision == stored.revision and exited.updated_us == 9_999
    with pytest.raises(UnknownProcess, match="ghost"):
        model.set_desired_state("web1", "ghost", DesiredState.RUNNING)


def test_process_lookups(model: Model) -> None:
    model.put_process(spec(agent="b", name="p2"))
    model.put_process(spec(agent="a", name="p1"))
    model.put_process(spec(agent="b", name="p1"))
    assert [(p.agent, p.name) for p in model.processes()] == [("a", "p1"), ("b", "p1"),
                                                              ("b", "p2")]
    assert [p.name for p in model.processes("b")] == ["p1", "p2"]
    assert [p.agent for p in model.processes(["a"])] == ["a"]
    assert model.find_process("a", "p2") is None
    with pytest.raises(UnknownProcess):
        model.process("a", "p2")
    with pytest.raises(InvalidRequest, match="process name"):
        model.put_process(spec(name=""))


# ---------------------------------------------------------------- reported statuses


def test_process_statuses(model: Model) -> None:
    model.replace_process_statuses("web1", [status(agent=""), status(agent="", name="db")])
    model.replace_process_statuses("web2", [status(agent="web2")])
    assert [(s.agent, s.name) for s in model.process_statuses("web1")] == [("web1", "api"),
                                                                          ("web1", "db")]
    model.replace_process_statuses("web1", [status(agent="", name="db")])
    assert [s.name for s in model.process_statuses("web1")] == ["db"]
    updated = status(name="db", state=ProcessState.STOPPED, updated_us=99)
    model.update_process_status(updated)
    model.update_process_status(status(name="new"))
    assert model.process_statuses("web1")[0] == updated
    assert len(model.process_statuses()) == 3


def test_note_process_state_updates_or_creates_the_status(model: Model) -> None:
    model.update_process_status(status())
    model.note_process_state("web1", "api", ProcessState.EXITED, 3, 0, now_us=500)
    [noted] = model.process_statuses("web1")
    assert (noted.state, noted.exit_code, noted.pid, noted.updated_us, noted.status) == \
        (ProcessState.EXITED, 3, 0, 500, "serving")
    stored = model.put_process(spec(name="fresh", bundle="tool"))
    model.note_process_state("web1", "fresh", ProcessState.STARTING, -1, 0, now_us=600)
    created = model.process_statuses("web1")[1]
    assert (created.name, created.bundle, created.revision, created.state) == \
        ("fresh", "tool", stored.revision, ProcessState.STARTING)


# ---------------------------------------------------------------- schedules


def test_schedules(model: Model) -> None:
    a = model.add_schedule(schedule())
    b = model.add_schedule(schedule(agent="web2", kind=ScheduleKind.AT, cron="", at_us=77,
                                    action=Action.KILL, signal="HUP"))
    assert 0 < a.id < b.id
    assert model.schedules() == [a, b]
    assert model.schedules("web2") == [b] and model.schedule(a.id) == a
    fired = model.update_schedule_fire(a.id, next_fire_us=9_000, last_fire_us=5_000)
    assert (fired.next_fire_us, fired.last_fire_us) == (9_000, 5_000)
    assert model.remove_schedule(a.id) == fired
    with pytest.raises(UnknownSchedule, match=str(a.id)):
        model.remove_schedule(a.id)
    with pytest.raises(UnknownSchedule):
        model.update_schedule_fire(a.id, 1, 1)
    with pytest.raises(UnknownSchedule):
        model.schedule(a.id)
    assert model.add_schedule(schedule()).id > b.id  # ids are never reused


def test_schedule_ids_are_not_reused_after_a_restart(model: Model) -> None:
    last = model.add_schedule(schedule())
    model.remove_schedule(last.id)
    model = reopen(model)
    try:
        assert model.add_schedule(schedule()).id > last.id
    finally:
        model.close()


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


# ---------------------------------------------------------------- restart


def test_everything_survives_a_restart(model: Model) -> None:
    token = model.create_token(Role.AGENT, "web1", now_us=1)
    model.agent_connected("web1", "host", "127.0.0.1:1", "lotc", now_us=2)
    model.set_desired_bundle("web1", "app", SHA_A, BundleKind.FILE, 8, now_us=3)
    model.replace_reported_bundles("web1", [BundleRecord("web1", "app", SHA_A,
                                                         BundleKind.FILE, 8, 4)])
    stored = model.put_process(spec())
    model.update_process_status(status())
    sched = model.add_schedule(schedule())
    model.add_event(event(seq=7))
    model.add_stats([stats("web1", 5)])
    before = (model.tokens(), model.agents(), model.desired_bundles(), model.reported_bundles(),
              model.processes(), model.process_statuses(), model.schedules(),
              model.events(), model.stats_history("web1"))
    model = reopen(model)
    try:
        after = (model.tokens(), model.agents(), model.desired_bundles(),
                 model.reported_bundles(), model.processes(), model.process_statuses(),
                 model.schedules(), model.events(), model.stats_history("web1"))
        assert after == before
        assert model.token_key(Role.AGENT, "web1") == hashlib.sha256(token.encode()).digest()
        assert model.process("web1", "api").revision == stored.revision
        assert model.schedule(sched.id) == sched
        assert model.add_event(event(seq=7)) is None
        assert model.mark_all_offline(now_us=9) == 1
    finally:
        model.close()
