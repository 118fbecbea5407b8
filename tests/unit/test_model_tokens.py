"""Tokens in the server's model, on a real SQLite file: digests, names, revocation, two writers."""
from __future__ import annotations

import hashlib
import hmac
import os
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from lotc.errors import (
    Conflict,
    InvalidRequest,
)
from lotc.server.model import Model
from protocol.enums import Role
from tests.model_helpers import (  # noqa: F401  (fixtures)
    db_path_fixture,
    model_fixture,
)

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
