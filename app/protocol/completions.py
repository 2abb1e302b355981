"""POST /v1/completions: the fields the ingress checks at the edge (see chat.py for why)."""

from __future__ import annotations

from pydantic import Field, field_validator

from app.protocol.chat import GenerationParams


class CompletionRequest(GenerationParams):
    prompt: str | list[str] | list[int] | list[list[int]]
    logprobs: int | None = Field(None, ge=0, le=20)
    echo: bool = False
    suffix: str | None = None

    @field_validator("prompt")
    @classmethod
    def _not_empty(cls, value):
        if isinstance(value, str):
            return value  # an empty string is a valid (if odd) prompt, as in OpenAI's API
        if not value:
            raise ValueError("prompt must not be an empty list")
        return value
