"""Dynamic batching settings shared by the embedding, rerank and speech deployments."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from ray import serve


class BatchConfig(BaseModel):
    """Requests that arrive within `batch_wait_timeout_s` of each other run as one batch."""

    model_config = ConfigDict(extra="forbid")

    max_batch_size: int = Field(
        64, ge=1, description="Most items (texts, pairs, clips) one batch may hold"
    )
    batch_wait_timeout_s: float = Field(
        0.005, ge=0, le=1, description="Longest a request waits for others to join its batch"
    )
    max_concurrent_batches: int = Field(
        1,
        ge=1,
        description="Batches computed at once in one replica; with single-threaded engines, "
        "2 keeps two cores busy while sharing one copy of the weights",
    )
    max_concurrent_batches: int = Field(
        1, ge=1, description="Batches that may run at once in one replica"
    )


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
