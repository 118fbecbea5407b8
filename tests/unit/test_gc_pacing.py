"""The server's full garbage collections run on its own timer, and the collector is
left as it was found when the server stops."""
from __future__ import annotations

import gc
import weakref

import pytest
import trio

from lotc.server import gc_pacing


async def test_full_collections_are_paced_then_the_collector_is_restored(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(gc_pacing, "CHECK_INTERVAL_S", 0.01)
    monkeypatch.setattr(gc_pacing, "FULL_COLLECTION_INTERVAL_S", 0.05)
    before = gc.get_threshold()
    async with trio.open_nursery() as nursery:
        await nursery.start(gc_pacing.pace_full_collections)
        assert gc.get_threshold()[2] == gc_pacing.NEVER  # CPython starts none itself
        assert gc.get_threshold()[:2] == before[:2]  # young collections as they were
        assert gc.get_freeze_count() > 0  # start-up's objects are walked no more
        full_runs = gc.get_stats()[2]["collections"]
        with trio.fail_after(5):
            while gc.get_stats()[2]["collections"] == full_runs:
                await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


async def test_cyclic_garbage_is_still_freed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gc_pacing, "CHECK_INTERVAL_S", 0.01)
    monkeypatch.setattr(gc_pacing, "FULL_COLLECTION_INTERVAL_S", 0.05)

    class Node:
        pass

    async with trio.open_nursery() as nursery:
        await nursery.start(gc_pacing.pace_full_collections)
        node = Node()
        node.self = node  # type: ignore[attr-defined]  a cycle: refcounting cannot free it
        gc.collect(1)  # promote it to the oldest generation, which only full runs walk
        ref = weakref.ref(node)
        del node
        with trio.fail_after(5):
            while ref() is not None:
                await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
