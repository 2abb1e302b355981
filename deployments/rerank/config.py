"""Recipe section `engine:` for a reranker."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from deployments.common.batching import BatchConfig


class RerankEngineConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["sentence-transformers-rerank"] = "sentence-transformers-rerank"
    scoring: Literal["cross-encoder", "bi-encoder"] = Field(
        "cross-encoder",
        description="cross-encoder reads query and document together (the production path); "
        "bi-encoder scores the cosine of separate embeddings",
    )
    allow_untrained_head: bool = Field(
        False,
        description="cross-encoder only: build a fresh, seeded scoring head on a checkpoint that "
        "has none. Plumbing tests only: its scores carry no meaning",
    )
    device: Literal["cpu", "cuda"] = "cpu"
    max_input_tokens: int | None = Field(
        None, ge=1, description="Longest query+document pair; None = the model's limit"
    )
    truncate: bool = Field(False, description="Over-long pair: false answers 400, true truncates")
    max_documents: int = Field(1000, ge=1, description="Most documents one request may carry")
    predict_batch_size: int = Field(64, ge=1, description="Pairs (or texts) per forward pass")
    num_threads: int | None = Field(None, ge=1, description="torch intra-op threads on CPU")
    batch: BatchConfig = Field(default_factory=BatchConfig)
