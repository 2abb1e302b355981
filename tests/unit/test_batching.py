"""SlotBatcher: batches form when a slot frees, bounded in size, failures stay in their batch."""

from __future__ import annotations

import asyncio

import pytest

from deployments.common.batching import SlotBatcher
from recipes.engines import BatchConfig


class Recorder:
    """A batch body that remembers each batch and holds it until released."""

    def __init__(self):
        self.batches: list[list[int]] = []
        self.release = asyncio.Event()

    async def run(self, items: list[int]) -> list[int]:
        self.batches.append(items)
        await self.release.wait()
        if -1 in items:
            raise ValueError("bad item")
        return [i * 10 for i in items]


async def test_what_queues_while_the_slot_is_busy_leaves_together():
    body = Recorder()
    batcher = SlotBatcher(body.run, BatchConfig(max_batch_size=8, batch_wait_timeout_s=0))
    first = asyncio.create_task(batcher.submit(0))
    await asyncio.sleep(0)  # the lone request left at once, with no wait
    rest = [asyncio.create_task(batcher.submit(i)) for i in range(1, 21)]
    await asyncio.sleep(0.01)
    assert body.batches == [[0]]  # one slot, busy: the other 20 wait in the queue
    body.release.set()
    assert await first == 0
    assert await asyncio.gather(*rest) == [i * 10 for i in range(1, 21)]
    assert body.batches[1:] == [list(range(1, 9)), list(range(9, 17)), list(range(17, 21))]


async def test_sizes_count_items_and_an_oversize_item_runs_alone():
    body = Recorder()
    body.release.set()
    config = BatchConfig(max_batch_size=10, batch_wait_timeout_s=0.02, max_concurrent_batches=1)
    batcher = SlotBatcher(body.run, config, size_of=lambda n: n)
    results = await asyncio.gather(*(batcher.submit(n) for n in (4, 5, 30, 3)))
    assert results == [40, 50, 300, 30]
    assert body.batches == [[4, 5], [30], [3]]


async def test_two_slots_run_two_batches_at_once():
    body = Recorder()
    batcher = SlotBatcher(
        body.run, BatchConfig(max_batch_size=2, batch_wait_timeout_s=0, max_concurrent_batches=2)
    )
    tasks = [asyncio.create_task(batcher.submit(i)) for i in range(5)]
    await asyncio.sleep(0.01)
    assert len(body.batches) == 2  # both slots busy, the rest queued
    body.release.set()
    assert await asyncio.gather(*tasks) == [0, 10, 20, 30, 40]


async def test_a_failing_batch_fails_only_its_own_callers():
    body = Recorder()
    body.release.set()
    batcher = SlotBatcher(body.run, BatchConfig(max_batch_size=2, batch_wait_timeout_s=0))
    results = await asyncio.gather(
        *(batcher.submit(i) for i in (1, -1, 2, 3)), return_exceptions=True
    )
    # 1 and -1 shared a batch: both fail; the next batch is unaffected
    assert [type(r) for r in results[:2]] == [ValueError, ValueError]
    assert results[2:] == [20, 30]
    assert body.batches == [[1, -1], [2, 3]]


async def test_a_caller_that_left_is_not_computed():
    body = Recorder()
    batcher = SlotBatcher(body.run, BatchConfig(max_batch_size=8, batch_wait_timeout_s=0))
    first = asyncio.create_task(batcher.submit(1))
    await asyncio.sleep(0)
    gone = asyncio.create_task(batcher.submit(2))
    kept = asyncio.create_task(batcher.submit(3))
    await asyncio.sleep(0)
    gone.cancel()
    body.release.set()
    assert await first == 10 and await kept == 30
    with pytest.raises(asyncio.CancelledError):
        await gone
    assert body.batches == [[1], [3]]
