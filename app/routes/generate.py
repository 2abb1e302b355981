"""POST /v1/chat/completions and /v1/completions: streamed (SSE) or unary, through a streaming
DeploymentHandle to the model's pool."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from app.context import enforce_working_context
from app.errors import serving_error_body
from app.pools import LLMClient
from app.protocol.chat import ChatCompletionRequest, GenerationParams
from app.protocol.completions import CompletionRequest
from app.registry import Pool
from app.routes.deps import call_context, call_pool, charge, pool_headers, resolve_pool
from deployments.common.errors import InvalidRequest, ServingError
from deployments.contract import TokenCounts
from recipes.engines import Task
from recipes.schema import GatewaySpec

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
    if isinstance(body, CompletionRequest):
        check_prompts(body.prompt, request.app.state.gateway)
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
            _encode(items, request, pool),
            media_type="text/event-stream",
            headers={**SSE_HEADERS, **headers},
        )
    result: dict[str, Any] = await anext(items)
    async for counts in items:  # the pool's TokenCounts, for the request log and the quota
        _note_counts(counts, request.state)
    charge(request, pool, _counted_tokens(request.state) or _total_tokens(result.get("usage")))
    return JSONResponse(content=result, headers=headers)


def check_prompts(prompt: Any, gateway: GatewaySpec) -> None:
    """400 for more prompts, or more token ids, than the gateway takes in one request."""
    prompts = [prompt] if isinstance(prompt, str) or not prompt else prompt
    if isinstance(prompts[0], int):
        prompts = [prompts]
    if len(prompts) > gateway.max_prompts:
        raise InvalidRequest(
            f"{len(prompts)} prompts in one request; at most {gateway.max_prompts}",
            param="prompt",
        )
    ids = sum(len(p) for p in prompts if isinstance(p, list))
    if ids > gateway.max_token_ids:
        raise InvalidRequest(
            f"{ids} token ids in one request; at most {gateway.max_token_ids}", param="prompt"
        )


def _total_tokens(usage: Any) -> int:
    return int(usage.get("total_tokens") or 0) if isinstance(usage, dict) else 0


async def _encode(
    items: AsyncIterator[str | TokenCounts], request: Request, pool: Pool
) -> AsyncIterator[bytes]:
    """The SSE lines as bytes. The pool's closing TokenCounts item goes to the request log and
    is charged to the tenant; a stream cut before it is charged one token per chunk sent.
    A failure after the response started (its replica died mid-stream) ends the stream with an
    error event in OpenAI's error shape, then `[DONE]`; the request is counted with the error's
    status, not as a client that went away."""
    chunks = 0
    try:
        async for line in items:
            if isinstance(line, TokenCounts):
                _note_counts(line, request.state)
            else:
                chunks += 1
                yield line.encode()
    except Exception as exc:
        error = pool.client.translate(exc)
        if not isinstance(error, ServingError):
            logger.exception("stream of pool %s failed", pool.id)
            error = ServingError(f"The stream from pool '{pool.id}' failed", code="stream_error")
        request.state.error_type = error.code or error.error_type
        request.state.stream_status = error.status_code
        yield sse_error(error)
    finally:
        charge(request, pool, _counted_tokens(request.state) or chunks)


def sse_error(error: ServingError) -> bytes:
    return b"data: " + orjson.dumps(serving_error_body(error)) + b"\n\ndata: [DONE]\n\n"


def _note_counts(item: Any, state: Any) -> None:
    """The engine's token counts go to the request log (app/observe.py), not to the client."""
    if isinstance(item, TokenCounts):
        state.tokens = (item.prompt_tokens, item.completion_tokens, item.cached_tokens)


def _counted_tokens(state: Any) -> int:
    prompt, completion, _ = getattr(state, "tokens", None) or (0, 0, 0)
    return (prompt or 0) + (completion or 0)
