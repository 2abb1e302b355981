"""Request-scoped helpers the routes share."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import Response
from pydantic import BaseModel

from app.registry import ModelRegistry, Pool

PROFILE_HEADER = "x-workload-profile"
RECIPE_HEADER = "x-recipe"


def registry(request: Request) -> ModelRegistry:
    return request.app.state.registry


def resolve_pool(request: Request, model: str, endpoint: str) -> Pool:
    return registry(request).resolve(model, endpoint, request.headers.get(PROFILE_HEADER))


def pool_headers(pool: Pool) -> dict[str, str]:
    """Response headers that trace a response to the exact launch that produced it."""
    return {RECIPE_HEADER: pool.recipe_ref, "x-pool": pool.name}


def json_response(body: BaseModel, pool: Pool) -> Response:
    # pydantic's own serializer: much faster than FastAPI's jsonable_encoder for vectors.
    return Response(
        content=body.model_dump_json(exclude_none=True),
        media_type="application/json",
        headers=pool_headers(pool),
    )
