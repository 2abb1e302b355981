"""POST /v1/rerank (Cohere/Jina shape), also at /rerank and /v2/rerank as vLLM serves it."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from app.protocol.rerank import RerankRequest, RerankResponse, response_from_scores
from app.routes.deps import call_context, call_pool, charge, json_bytes_response, resolve_pool
from deployments.common.errors import InvalidRequest
from deployments.contract import RerankCall
from recipes.engines import RerankEngineConfig, Task

router = APIRouter(tags=["rerank"])


@router.post("/v1/rerank", response_model=RerankResponse)
@router.post("/v2/rerank", response_model=RerankResponse, include_in_schema=False)
@router.post("/rerank", response_model=RerankResponse, include_in_schema=False)
async def rerank(body: RerankRequest, request: Request) -> Response:
    pool = resolve_pool(request, body.model, Task.RERANK)
    engine: RerankEngineConfig = pool.spec.engine  # type: ignore[assignment]
    documents = body.document_texts()
    if len(documents) > engine.max_documents:  # before the hop: no memory spent on it
        raise InvalidRequest(
            f"{len(documents)} documents in one request; this model takes at most "
            f"{engine.max_documents}",
            param="documents",
        )
    call = RerankCall(
        query=body.query, documents=documents, truncate=body.truncate, context=call_context(request)
    )
    scores, pool = await call_pool(request, lambda client: client.rerank(call))
    request.state.tokens = (scores.tokens, 0, 0)  # for the request log
    charge(request, pool, scores.tokens, documents=len(documents))
    response = response_from_scores(scores, body, documents, pool.model)
    return json_bytes_response(response.model_dump_json(exclude_none=True).encode(), pool)
