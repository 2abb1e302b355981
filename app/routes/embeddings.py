"""POST /v1/embeddings."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from app import dispatch
from app.protocol.embeddings import EmbeddingRequest, EmbeddingResponse
from app.routes.deps import call_context, json_response, resolve_pool

router = APIRouter(tags=["embeddings"])


@router.post("/v1/embeddings", response_model=EmbeddingResponse)
async def create_embeddings(body: EmbeddingRequest, request: Request) -> Response:
    pool = resolve_pool(request, body.model, "embed")
    result: EmbeddingResponse = await dispatch.call(pool, "embed", body, call_context(request))
    return json_response(result, pool)
