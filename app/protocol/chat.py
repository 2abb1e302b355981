"""POST /v1/chat/completions: the fields the ingress checks at the edge.

The engine's own request model (vLLM's ChatCompletionRequest) validates everything again in
the deployment; this model exists so obviously bad requests are refused before they reach a
GPU pool, and to document the contract. Unknown fields pass through to the engine (vLLM's
extra sampling parameters such as top_k, min_p, repetition_penalty, ignore_eos).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from app.protocol.common import check_json_value


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")

    include_usage: bool = False


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[dict[str, Any]] | None = None


class GenerationParams(BaseModel):
    """Sampling fields shared by chat and completions."""

    model_config = ConfigDict(extra="allow")

    model: str
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    n: int = Field(1, ge=1, le=16)
    seed: int | None = None
    stop: str | list[str] | None = None
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    user: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _valid_text_and_depth(cls, data: Any) -> Any:
        return check_json_value(data)

    @model_validator(mode="after")
    def _stream_options_need_stream(self):
        if self.stream_options is not None and not self.stream:
            raise ValueError("stream_options is only allowed when stream is true")
        return self

    def engine_body(self) -> dict[str, Any]:
        """What the deployment receives: exactly the fields the client sent."""
        return self.model_dump(exclude_unset=True, mode="json")


class ChatCompletionRequest(GenerationParams):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    logprobs: bool | None = None
    top_logprobs: int | None = Field(None, ge=0, le=20)
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
