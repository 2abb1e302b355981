"""Request-scoped helpers the routes share."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import Response

from app.registry import ModelRegistry, Pool
from deployments.contract import CallContext
from recipes.engines import Task

PROFILE_HEADER = "x-workload-profile"
RECIPE_HEADER = "x-recipe"
POOL_HEADER = "x-pool"


def registry(request: Request) -> ModelRegistry:
    return request.app.state.registry


def resolve_pool(request: Request, model: str, endpoint: Task) -> Pool:
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
    # identity.recipe is the ref computed once: hashing the recipe per response cost ~5% of the
    # Gateway's Python time on one-text embeddings (results/embeddings-profile-cpu).
    return {RECIPE_HEADER: pool.identity.recipe, POOL_HEADER: pool.id}


def json_bytes_response(content: bytes, pool: Pool) -> Response:
    return Response(content=content, media_type="application/json", headers=pool_headers(pool))
