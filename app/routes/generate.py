"""POST /v1/chat/completions and /v1/completions: streamed (SSE) or unary, through a streaming
DeploymentHandle to the model's pool."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from app.errors import serving_error_body
from app.pools import LLMClient
from app.protocol.chat import ChatCompletionRequest, GenerationParams
from app.protocol.completions import CompletionRequest
from app.registry import Pool
from app.routes.deps import call_context, call_pool, pool_headers, resolve_pool
from deployments.common.errors import ServingError
from recipes.engines import Task

router = APIRouter(tags=["generation"])
logger = logging.getLogger("ray.serve")

SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


@router.post("/v1/chat/completions")
async def chat_completions(body: ChatCompletionRequest, request: Request) -> Response:
    return await _generate(body, request, Task.CHAT)


@router.post("/v1/completions")
async def completions(body: CompletionRequest, request: Request) -> Response:
    return await _generate(body, request, Task.COMPLETION)


async def _generate(body: GenerationParams, request: Request, endpoint: Task) -> Response:
    resolve_pool(request, body.model, endpoint)  # the route (candidate share) is in request.state
    engine_body, context = body.engine_body(), call_context(request)

    def generate(client: LLMClient) -> Any:
        method = client.chat if endpoint is Task.CHAT else client.completion
        return method(engine_body, context)

    items, pool = await call_pool(request, generate)
    headers = pool_headers(pool)
    if body.stream:
        return StreamingResponse(
            _encode(items, request, pool),
            media_type="text/event-stream",
            headers={**SSE_HEADERS, **headers},
        )
    result: dict[str, Any] = await anext(items)
    await items.aclose()
    return JSONResponse(content=result, headers=headers)


async def _encode(items: AsyncIterator[str], request: Request, pool: Pool) -> AsyncIterator[bytes]:
    """SSE bytes. A failure after the response started (its replica died mid-stream) ends the
    stream with an error event in OpenAI's error shape, then `[DONE]`; the request is counted
    with the error's status, not as a client that went away."""
    try:
        async for line in items:
            yield line.encode()
    except Exception as exc:
        error = pool.client.translate(exc)
        if not isinstance(error, ServingError):
            logger.exception("stream of pool %s failed", pool.id)
            error = ServingError(f"The stream from pool '{pool.id}' failed", code="stream_error")
        request.state.error_type = error.code or error.error_type
        request.state.stream_status = error.status_code
        yield sse_error(error)


def sse_error(error: ServingError) -> bytes:
    return b"data: " + orjson.dumps(serving_error_body(error)) + b"\n\ndata: [DONE]\n\n"
