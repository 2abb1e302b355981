"""Shapes shared by every endpoint: errors, usage, the model list."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from recipes.engines import Task

MAX_JSON_DEPTH = 64
_SCALARS = {int, float, bool, type(None)}


def check_json_value(data: Any) -> Any:
    """Refuse (400) what parsed as JSON but no component downstream can take: text with a lone
    UTF-16 surrogate (`"\\ud800"` decodes to one; it cannot be encoded again) and nesting deeper
    than MAX_JSON_DEPTH. One pass, iterative; a list of numbers is checked at C speed."""
    stack: list[tuple[Any, int]] = [(data, 0)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, str):
            if not value.isascii():
                try:
                    value.encode("utf-8")
                except UnicodeEncodeError:
                    raise ValueError(
                        "text contains a lone UTF-16 surrogate (e.g. \\ud800), which is not "
                        "valid Unicode"
                    ) from None
            continue
        if isinstance(value, dict | list):
            if depth >= MAX_JSON_DEPTH:
                raise ValueError(f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
            if isinstance(value, dict):
                stack.extend((k, depth + 1) for k in value)
                stack.extend((v, depth + 1) for v in value.values())
            elif not set(map(type, value)) <= _SCALARS:
                stack.extend((v, depth + 1) for v in value)
    return data


class RequestModel(BaseModel):
    """Base of request bodies: unknown fields are ignored, as OpenAI's API does."""

    model_config = ConfigDict(extra="ignore")

    @model_validator(mode="before")
    @classmethod
    def _valid_text_and_depth(cls, data: Any) -> Any:
        return check_json_value(data)


class ErrorInfo(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    """OpenAI's error JSON: {"error": {"message", "type", "param", "code"}}."""

    error: ErrorInfo


class Usage(BaseModel):
    prompt_tokens: int = 0
    total_tokens: int = 0
    completion_tokens: int | None = None


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "inference-platform"
    task: Task
    root: str = Field(description="The canonical model id (differs from `id` for an alias)")
    recipe: str = Field(description="id@version+hash of the serving recipe behind it")
    pools: list[str] = Field(default_factory=list, description="Workload profiles serving it")
    runtime: dict | None = Field(
        None,
        description="Speech pools: where a replica really runs (device, compute_type, "
        "fallback_reason, cuda_libs); null when no replica answered within a second",
    )


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]
