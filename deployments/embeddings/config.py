"""Recipe section `engine:` for an embedding model."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from deployments.common.batching import BatchConfig


class EmbeddingEngineConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["sentence-transformers"] = "sentence-transformers"
    device: Literal["cpu", "cuda"] = "cpu"
    dtype: Literal["float32", "float16", "bfloat16"] = Field(
        "float32", description="float16 halves memory and time on a GPU; CPUs want float32"
    )
    normalize: bool = Field(True, description="Unit-length vectors, so dot product = cosine")
    max_input_tokens: int | None = Field(
        None, ge=1, description="Longest input in tokens; None = the model's max_seq_length"
    )
    truncate: bool = Field(
        False,
        description="Over-long input: false answers 400 (no silent loss of text), true truncates",
    )
    max_inputs: int = Field(2048, ge=1, description="Most inputs one request may carry")
    encode_batch_size: int = Field(64, ge=1, description="Texts per forward pass")
    num_threads: int | None = Field(
        None, ge=1, description="torch intra-op threads on CPU; None keeps Ray's setting"
    )
    batch: BatchConfig = Field(default_factory=BatchConfig)
