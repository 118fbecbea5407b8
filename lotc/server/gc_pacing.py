"""When the server's garbage collector walks every object: on a timer, not at random.

A full collection walks every object the collector tracks: about 450,000 with
10,000 agents connected, 0.3-0.5 s on this machine during which the event loop
runs nothing else. CPython starts one whenever the objects that survived two
young collections since the last full one reach a quarter of the old ones; a
server holding 10,000 agents got there every few seconds, and each time every
console request and heartbeat in flight waited (bench.server_load, console p99;
docs/performance.md "Server").

So the server (`pace_full_collections`):
- freezes what start-up made (modules, classes, functions: never garbage), so no
  collection walks it again;
- leaves young collections to CPython (they are short), but not full ones;
- runs the full collection itself every FULL_COLLECTION_INTERVAL_S, or sooner after
  YOUNG_COLLECTIONS_PER_FULL collections of the middle generation, so garbage
  caught in reference cycles is still freed: minutes later, not never.

Objects freed by reference counting (nearly all) are freed at once as always.
"""
from __future__ import annotations

import gc
import logging
import time

import trio

logger = logging.getLogger(__name__)

FULL_COLLECTION_INTERVAL_S = 300.0
YOUNG_COLLECTIONS_PER_FULL = 2000  # middle-generation runs; CPython's own rule is 10
CHECK_INTERVAL_S = 5.0
NEVER = 1 << 30  # a threshold CPython's counter does not reach


async def pace_full_collections(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    gen0, gen1, gen2 = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(gen0, gen1, NEVER)
    task_status.started()
    try:
        last = trio.current_time()
        while True:
            await trio.sleep(CHECK_INTERVAL_S)
            # get_count()[2]: middle-generation collections since the last full one.
            if (trio.current_time() - last < FULL_COLLECTION_INTERVAL_S
                    and gc.get_count()[2] < YOUNG_COLLECTIONS_PER_FULL):
                continue
            began = time.perf_counter()
            freed = gc.collect()
            last = trio.current_time()
            logger.debug("full collection: %d objects freed in %.0f ms",
                         freed, (time.perf_counter() - began) * 1000)
    finally:
        gc.set_threshold(gen0, gen1, gen2)
        gc.unfreeze()
