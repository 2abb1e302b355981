"""POST /v1/embeddings, OpenAI's shape (plus `truncate`, an extension)."""

from __future__ import annotations

import base64
from typing import Literal

import orjson
from pydantic import BaseModel, Field, field_validator

from app.protocol.common import RequestModel, Usage
from deployments.contract import Embeddings


class EmbeddingRequest(RequestModel):
    model: str
    input: str | list[str] | list[int] | list[list[int]] = Field(
        description="Text, texts, or token ids of the model's own tokenizer"
    )
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(None, ge=1, description="Keep the first N dimensions")
    user: str | None = None
    truncate: bool | None = Field(
        None, description="Over-long input: true truncates, false is a 400; default from the recipe"
    )

    @field_validator("input")
    @classmethod
    def _not_empty(cls, value):
        if isinstance(value, str):
            if not value:
                raise ValueError("input must not be an empty string")
            return value
        if not value:
            raise ValueError("input must not be an empty list")
        for i, item in enumerate(value):
            if isinstance(item, str | list) and len(item) == 0:
                raise ValueError(f"input[{i}] must not be empty")
        return value

    def texts_or_ids(self) -> list[str] | list[list[int]]:
        """The inputs as a list of texts or a list of token-id lists."""
        if isinstance(self.input, str):
            return [self.input]
        if all(isinstance(x, int) for x in self.input):
            return [self.input]  # type: ignore[list-item]
        return self.input  # type: ignore[return-value]


class EmbeddingData(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str


class EmbeddingResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[EmbeddingData]
    model: str
    usage: Usage


def response_body(result: Embeddings, model: str, encoding_format: str) -> bytes:
    """EmbeddingResponse as JSON bytes, written straight from the float32 array: the vectors
    never become Python float lists (float32 values print at float32's shortest form)."""
    vectors = result.vectors
    if encoding_format == "base64":
        # OpenAI's encoding: little-endian float32 bytes, base64 (the official client decodes so).
        little = vectors.astype("<f4", copy=False)
        rows = [base64.b64encode(row.tobytes()).decode("ascii") for row in little]
    else:
        rows = list(vectors)
    tokens = result.prompt_tokens
    return orjson.dumps(
        {
            "object": "list",
            "data": [
                {"object": "embedding", "index": i, "embedding": row} for i, row in enumerate(rows)
            ],
            "model": model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        },
        option=orjson.OPT_SERIALIZE_NUMPY,
    )
