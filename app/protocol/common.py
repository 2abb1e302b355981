"""Shapes shared by every endpoint: errors, usage, the model list."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from recipes.engines import Task


class RequestModel(BaseModel):
    """Base of request bodies: unknown fields are ignored, as OpenAI's API does."""

    model_config = ConfigDict(extra="ignore")


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
