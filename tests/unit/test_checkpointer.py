"""WAL checkpoints run in a worker thread on a real SQLite file, and the server's own
connection is put back as it was when the task stops."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import trio

from lotc.server import checkpointer
from lotc.server.model import Model
from protocol.enums import Role


async def test_the_wal_is_copied_back_off_the_event_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(checkpointer, "INTERVAL_S", 0.01)
    model = Model(tmp_path / "lotc.db")
    wal = tmp_path / "lotc.db-wal"
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(checkpointer.run_checkpoints, model)
            assert model.wal_autocheckpoint() == checkpointer.SAFETY_NET_PAGES
            for i in range(300):  # enough commits to pass SQLite's default 1,000 pages
                model.create_token(Role.AGENT, f"node-{i}", i)
            db_size = os.path.getsize(tmp_path / "lotc.db")
            with trio.fail_after(10):  # the checkpoint copies the new pages into the file
                while os.path.getsize(tmp_path / "lotc.db") == db_size:
                    await trio.sleep(0.01)
            assert wal.exists()
            nursery.cancel_scope.cancel()
        assert model.wal_autocheckpoint() == checkpointer.DEFAULT_AUTOCHECKPOINT_PAGES
        assert len(model.tokens()) == 300
    finally:
        model.close()
