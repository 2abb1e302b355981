"""Dynamic batching shared by the embedding and rerank deployments and the Gateway's coalescing
clients; the settings are the recipe's (recipes.engines.BatchConfig).

Why not Serve's @serve.batch: it closes a batch after its wait timeout and only then waits for a
free compute slot (max_concurrent_batches), so under saturation requests queue up as pre-formed
batches of one or two (measured on this CPU: 1.2 texts per batch with 32 one-text requests in
flight; results/embeddings-profile-cpu/PROFILE.md). SlotBatcher forms a batch when a slot frees:
everything that queued while the slots were busy leaves together.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

from recipes.engines import BatchConfig

T = TypeVar("T")
R = TypeVar("R")


def chunked(items: list, size: int) -> list[list]:
    """Split a request's items so that its pieces can run in concurrent batches."""
    return [items[i : i + size] for i in range(0, len(items), size)]


class SlotBatcher(Generic[T, R]):
    """Runs `run(batch) -> results` (one result per item, in order) with at most
    `max_concurrent_batches` batches at once; a batch is formed when a slot is free, of the
    queued items in arrival order up to `max_batch_size` (counted by `size_of`; an item larger
    than that runs alone). A free slot waits up to `batch_wait_timeout_s` for company while the
    batch is not full; with 0 a lone request goes at once."""

    def __init__(
        self,
        run: Callable[[list[T]], Awaitable[list[R]]],
        config: BatchConfig,
        size_of: Callable[[T], int] = lambda _: 1,
    ):
        self._run = run
        self._config = config
        self._size_of = size_of
        self._queue: collections.deque[tuple[T, asyncio.Future[R]]] = collections.deque()
        self._queued_size = 0
        self._busy = 0
        self.slots = config.max_concurrent_batches
        """Batches in flight at most; a Gateway client widens it as its pool gains replicas."""

    async def submit(self, item: T) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))
        self._queued_size += self._size_of(item)
        self._start_batches()
        return await future

    def _start_batches(self) -> None:
        while self._queue and self._busy < self.slots:
            self._busy += 1
            asyncio.get_running_loop().create_task(self._one_batch())

    def _take(self) -> list[tuple[T, asyncio.Future[R]]]:
        batch, size = [], 0
        while self._queue:
            item, future = self._queue[0]
            item_size = self._size_of(item)
            if batch and size + item_size > self._config.max_batch_size:
                break
            self._queue.popleft()
            self._queued_size -= item_size
            if not future.done():  # a caller that went away is dropped here
                batch.append((item, future))
                size += item_size
        return batch

    async def _one_batch(self) -> None:
        try:
            wait_s = self._config.batch_wait_timeout_s
            if wait_s > 0 and self._queued_size < self._config.max_batch_size:
                await asyncio.sleep(wait_s)
            batch = self._take()
            if not batch:
                return
            try:
                results = await self._run([item for item, _ in batch])
            except Exception as exc:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                return
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)
        finally:
            self._busy -= 1
            self._start_batches()


async def run_flat_batch(
    groups: list[tuple[list[Any], float]],
    compute: Callable[[list[Any]], Any],
    telemetry: Any,
) -> list[Any]:
    """Batch body shared by the pools: each group is one request's items and its ingress
    arrival; all items run as one `compute` call off the event loop, and the result (an array
    with one row per item) is split back per request. Records queue and batch telemetry."""
    for _, arrival in groups:
        telemetry.queued(arrival)
    flat = [item for items, _ in groups for item in items]
    started = time.perf_counter()
    result = await asyncio.to_thread(compute, flat)
    telemetry.batch(len(flat), time.perf_counter() - started)
    out, start = [], 0
    for items, _ in groups:
        out.append(result[start : start + len(items)])
        start += len(items)
    return out


def group_size(group: tuple[list[Any], float]) -> int:
    """A group's size in items (texts, pairs), not requests."""
    return len(group[0])
