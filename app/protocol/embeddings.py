"""POST /v1/embeddings, OpenAI's shape (plus `truncate`, an extension)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, field_validator

from app.protocol.common import RequestModel, Usage


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
