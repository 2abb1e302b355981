"""Dynamic batching settings shared by the embedding, rerank and speech deployments."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


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
        1, ge=1, description="Batches that may run at once in one replica"
    )


def chunked(items: list, size: int) -> list[list]:
    """Split a request's items so no piece exceeds one batch (Serve refuses an oversize item)."""
    return [items[i : i + size] for i in range(0, len(items), size)]
