"""POST /v1/embeddings."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from app.protocol.embeddings import EmbeddingRequest, EmbeddingResponse, response_body
from app.routes.deps import call_context, call_pool, charge, json_bytes_response, resolve_pool
from deployments.common.errors import InvalidRequest
from deployments.contract import EmbedCall
from recipes.engines import EmbeddingEngineConfig, Task

router = APIRouter(tags=["embeddings"])


@router.post("/v1/embeddings", response_model=EmbeddingResponse)
async def create_embeddings(body: EmbeddingRequest, request: Request) -> Response:
    pool = resolve_pool(request, body.model, Task.EMBED)
    engine: EmbeddingEngineConfig = pool.spec.engine  # type: ignore[assignment]
    inputs = body.texts_or_ids()
    if len(inputs) > engine.max_inputs:  # before the hop: no memory spent on it
        raise InvalidRequest(
            f"{len(inputs)} inputs in one request; this model takes at most {engine.max_inputs}",
            param="input",
        )
    limit = request.app.state.gateway.max_token_ids
    ids = sum(len(x) for x in inputs if isinstance(x, list))
    if ids > limit:
        raise InvalidRequest(f"{ids} token ids in one request; at most {limit}", param="input")
    call = EmbedCall(
        inputs=inputs,
        truncate=body.truncate,
        dimensions=body.dimensions,
        context=call_context(request),
    )
    result, pool = await call_pool(request, lambda client: client.embed(call))
    request.state.tokens = (result.prompt_tokens, 0, 0)  # for the request log
    charge(request, pool, result.prompt_tokens, texts=len(inputs))
    return json_bytes_response(response_body(result, pool.model, body.encoding_format), pool)
