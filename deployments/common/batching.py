"""Dynamic batching shared by the embedding and rerank deployments and the Gateway's coalescing
clients; the settings are the recipe's (recipes.engines.BatchConfig)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from ray import serve

from recipes.engines import BatchConfig


def chunked(items: list, size: int) -> list[list]:
    """Split a request's items so no piece exceeds one batch (Serve refuses an oversize item)."""
    return [items[i : i + size] for i in range(0, len(items), size)]


def make_batcher(
    run_batch: Callable[[list[Any]], Awaitable[list[Any]]],
    config: BatchConfig,
    size_of: Callable[[list[Any]], int],
) -> Callable[[Any], Awaitable[Any]]:
    """Wrap `run_batch` (items -> results, one per item) in Serve's dynamic batching, sized by
    `size_of` (e.g. texts, not requests) with every knob taken from the recipe."""
    return serve.batch(
        max_batch_size=config.max_batch_size,
        batch_wait_timeout_s=config.batch_wait_timeout_s,
        max_concurrent_batches=config.max_concurrent_batches,
        batch_size_fn=size_of,
    )(run_batch)


async def run_flat_batch(
    groups: list[tuple[list[Any], float]],
    compute: Callable[[list[Any]], Any],
    telemetry: Any,
) -> list[Any]:
    """Serve-batch body shared by the pools: each group is one request's items and its ingress
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


def count_items(groups: list[tuple[list[Any], float]]) -> int:
    """Batch size in items (texts, pairs), not requests."""
    return sum(len(items) for items, _ in groups)
