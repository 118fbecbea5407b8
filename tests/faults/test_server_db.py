"""Fault 7: the server's database directory is missing or read-only.

The server must refuse to start with one plain sentence naming the file and
the likely cause, exit non-zero, and print no traceback.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tests.cluster import Cluster
from tests.faults.conftest import remount


def start_server(cluster: Cluster, db: Path) -> tuple[int, str]:
    result = cluster.lotc("server", "--db", str(db), "--listen", "127.0.0.1:0",
                          "--admin-listen", "127.0.0.1:0", check=False, timeout=30)
    return result.returncode, result.stderr


def assert_clear_refusal(returncode: int, stderr: str, db: Path, cause: str) -> None:
    assert returncode == 1, stderr
    assert "Traceback" not in stderr and "ExceptionGroup" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.startswith("lotc server:")]
    assert len(lines) == 1, stderr  # said once
    assert str(db) in lines[0] and cause in lines[0], lines[0]


def test_db_in_a_missing_directory(cluster: Cluster) -> None:
    db = cluster.root / "no" / "such" / "dir" / "lotc.db"
    code, stderr = start_server(cluster, db)
    assert_clear_refusal(code, stderr, db, "does not exist")


def test_db_on_a_read_only_file_system(cluster: Cluster,
                                       tmpfs: Callable[..., Path]) -> None:
    empty = tmpfs("ro-empty", size="1m", ro=True)  # a new database cannot be created
    code, stderr = start_server(cluster, empty / "lotc.db")
    assert_clear_refusal(code, stderr, empty / "lotc.db", "not writable")

    filled = tmpfs("ro-filled", size="4m")  # an existing database that became read-only
    cluster.lotc("token", "create", "--admin", "root", "--db", str(filled / "lotc.db"))
    remount(filled, "ro")
    code, stderr = start_server(cluster, filled / "lotc.db")
    assert_clear_refusal(code, stderr, filled / "lotc.db", "not writable")
