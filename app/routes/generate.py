"""POST /v1/chat/completions and /v1/completions: streamed (SSE) or unary, through a streaming
DeploymentHandle to the model's pool."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from app.context import enforce_working_context
from app.pools import LLMClient
from app.protocol.chat import ChatCompletionRequest, GenerationParams
from app.protocol.completions import CompletionRequest
from app.routes.deps import call_context, call_pool, pool_headers, resolve_pool
from deployments.contract import TokenCounts
from recipes.engines import Task

router = APIRouter(tags=["generation"])

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
    # A prompt over the pool's working context goes to the long-context pool or gets a 400.
    await enforce_working_context(request, engine_body, endpoint)

    def generate(client: LLMClient) -> Any:
        method = client.chat if endpoint is Task.CHAT else client.completion
        return method(engine_body, context)

    items, pool = await call_pool(request, generate)
    headers = pool_headers(pool)
    if body.stream:
        return StreamingResponse(
            _encode(items, request.state),
            media_type="text/event-stream",
            headers={**SSE_HEADERS, **headers},
        )
    result: dict[str, Any] = await anext(items)
    async for counts in items:  # the pool's TokenCounts, for the request log
        _note_counts(counts, request.state)
    return JSONResponse(content=result, headers=headers)


async def _encode(items: AsyncIterator[str | TokenCounts], state: Any) -> AsyncIterator[bytes]:
    async for line in items:
        if isinstance(line, TokenCounts):
            _note_counts(line, state)
        else:
            yield line.encode()


def _note_counts(item: Any, state: Any) -> None:
    """The engine's token counts go to the request log (app/observe.py), not to the client."""
    if isinstance(item, TokenCounts):
        state.tokens = (item.prompt_tokens, item.completion_tokens, item.cached_tokens)
