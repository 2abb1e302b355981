"""Request-scoped helpers the routes share."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import Response
from pydantic import BaseModel

from app.registry import ModelRegistry, Pool
from deployments.common.identity import CallContext

PROFILE_HEADER = "x-workload-profile"
RECIPE_HEADER = "x-recipe"


def registry(request: Request) -> ModelRegistry:
    return request.app.state.registry


def resolve_pool(request: Request, model: str, endpoint: str) -> Pool:
    pool = registry(request).resolve(model, endpoint, request.headers.get(PROFILE_HEADER))
    request.state.pool = pool  # the metrics middleware labels the request with it
    return pool


def call_context(request: Request) -> CallContext:
    """Request id (Serve's proxy always sets x-request-id) and ingress arrival time."""
    return CallContext(
        request_id=request.headers.get("x-request-id", ""),
        arrival=getattr(request.state, "arrival", 0.0),
    )


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
