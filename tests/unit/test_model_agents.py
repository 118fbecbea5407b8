"""Agents, blobs and bundles in the server's model, on a real SQLite file."""
from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pytest

from lotc.errors import (
    ChecksumMismatch,
    InvalidRequest,
    UnknownAgent,
)
from lotc.server.model import Model
from lotc.server.records import BundleRecord
from protocol.enums import (
    BundleKind,
    Role,
)
from tests.model_helpers import (  # noqa: F401  (fixtures)
    SHA_A,
    SHA_B,
    db_path_fixture,
    model_fixture,
)

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
