"""POST /v1/rerank (Cohere/Jina shape), also at /rerank and /v2/rerank as vLLM serves it."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from app import dispatch
from app.protocol.rerank import RerankRequest, RerankResponse
from app.routes.deps import call_context, json_response, resolve_pool

router = APIRouter(tags=["rerank"])


@router.post("/v1/rerank", response_model=RerankResponse)
@router.post("/v2/rerank", response_model=RerankResponse, include_in_schema=False)
@router.post("/rerank", response_model=RerankResponse, include_in_schema=False)
async def rerank(body: RerankRequest, request: Request) -> Response:
    pool = resolve_pool(request, body.model, "rerank")
    result: RerankResponse = await dispatch.call(pool, "rerank", body, call_context(request))
    return json_response(result, pool)
