"""SlotBatcher: batches form when a slot frees, bounded in size, failures stay in their batch;
the Gateway's coalescing client widens its slots with its pool's running replicas."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import numpy as np
import pytest
from pydantic import ValidationError

from app.pools import EmbeddingClient
from deployments.common.batching import SlotBatcher
from deployments.contract import Embeddings
from recipes.engines import BatchConfig
from recipes.loader import load_recipe
from recipes.schema import Recipe


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


class _HeldHandle:
    """A pool handle whose calls wait until released; counts the calls in flight."""

    def __init__(self):
        self.embed = self
        self.in_flight = 0
        self.most_in_flight = 0
        self.release = asyncio.Event()

    def remote(self, calls):
        async def answer():
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
            await self.release.wait()
            self.in_flight -= 1
            return [Embeddings(np.zeros((len(c.inputs), 2), np.float32), 1) for c in calls]

        return asyncio.ensure_future(answer())


async def test_the_gateway_sends_more_calls_as_its_pool_gains_replicas():
    # embed-minilm-cpu-autoscale@2: coalesce.max_concurrent_batches 3 per running replica;
    # requests of max_batch_size (64) texts, so each is a call of its own.
    handle = _HeldHandle()
    client = EmbeddingClient(load_recipe("embed-minilm-cpu-autoscale@2"), handle)
    one = [
        asyncio.ensure_future(client.embed(SimpleNamespace(inputs=["a"] * 64))) for _ in range(20)
    ]
    await asyncio.sleep(0.01)
    assert handle.most_in_flight == 3 and client.held == 20
    client.replicas_running(3)  # the replica watcher saw the pool scale out
    more = [
        asyncio.ensure_future(client.embed(SimpleNamespace(inputs=["b"] * 64))) for _ in range(20)
    ]
    await asyncio.sleep(0.01)
    assert handle.most_in_flight == 9
    handle.release.set()
    await asyncio.gather(*one, *more)
    assert client.held == 0


def test_an_autoscaling_pool_must_let_its_autoscaler_see_demand():
    recipe = load_recipe("embed-minilm-cpu-autoscale@2").model_dump(mode="json")
    recipe["engine"]["coalesce"]["max_concurrent_batches"] = 2  # = target_ongoing_requests
    with pytest.raises(ValidationError, match="autoscaler would never see demand"):
        Recipe.model_validate(recipe)
