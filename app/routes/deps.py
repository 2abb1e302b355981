"""Request-scoped helpers the routes share."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from fastapi import Request
from fastapi.responses import Response

from app.auth import OPEN_CALLER, Caller
from app.errors import ClientDisconnected
from app.registry import ModelRegistry, Pool, Route
from deployments.common.errors import ServingError
from deployments.contract import CallContext
from recipes.engines import Task
from telemetry import metrics

PROFILE_HEADER = "x-workload-profile"
RECIPE_HEADER = "x-recipe"
POOL_HEADER = "x-pool"
ROUTING_HEADER = "x-routing-policy"

logger = logging.getLogger("ray.serve")
T = TypeVar("T")

# Shadow copies run detached from their request; kept here so they are not garbage-collected.
_shadow_tasks: set[asyncio.Task] = set()


def registry(request: Request) -> ModelRegistry:
    return request.app.state.registry


def caller(request: Request) -> Caller:
    """Who sent the request (AuthMiddleware put it in the request's state)."""
    return getattr(request.state, "caller", OPEN_CALLER)


def resolve_pool(request: Request, model: str, endpoint: Task) -> Pool:
    """The pool that answers this request. During a rollout of that model's pool the request
    may go to the candidate (its canary share, or an `x-pool` header naming it). 403 for a key
    that may not use the model or the pool."""
    reg = registry(request)
    pool = reg.resolve(model, endpoint, request.headers.get(PROFILE_HEADER))
    caller(request).check_model(model, pool.model, pool.spec.id)
    route = reg.route(pool, request.headers.get(POOL_HEADER))
    request.state.route = route
    request.state.pool = route.pool  # the metrics middleware labels the request with it
    return route.pool


def retriable(exc: BaseException) -> bool:
    """A candidate failure worth one retry on the current pool: a 5xx of ours, or a replica
    that died or cannot be reached (anything that is not a client's mistake)."""
    if isinstance(exc, ServingError):
        return exc.status_code >= 500
    return isinstance(exc, Exception)


async def call_pool(request: Request, call: Callable[[Any], Awaitable[T]]) -> tuple[T, Pool]:
    """`call(client)` on the request's pool. A candidate's failure (5xx, unavailable) is
    retried once on the current pool and counted; a shadow pool gets the same call in the
    background. Returns the result and the pool that produced it (for the response headers).

    For streams the LLM client awaits the first item before returning, so a retry happens
    only before any byte went to the client.
    """
    route: Route = request.state.route
    if route.shadow is not None:
        _mirror(route.shadow, call)
    try:
        return await until_disconnected(request, call(route.pool.client)), route.pool
    except ClientDisconnected:
        raise
    except Exception as exc:
        if route.fallback is None or not retriable(exc):
            raise
        error_type = type(exc).__name__
        metrics.rollout_fallbacks_total().inc(
            1,
            tags={
                **route.pool.identity.tags,
                "fallback": route.fallback.id,
                "error_type": error_type,
            },
        )
        logger.warning(
            "rollout fallback",
            extra={
                "event": "rollout_fallback",
                "platform_request_id": request.headers.get("x-request-id", ""),
                "candidate": route.pool.id,
                "fallback": route.fallback.id,
                "error_type": error_type,
                "error": str(exc)[:300],
            },
        )
        request.state.pool = route.fallback
        return await until_disconnected(request, call(route.fallback.client)), route.fallback


async def until_disconnected(request: Request, work: Awaitable[T]) -> T:
    """`work`, cancelled as soon as the client disconnects. A streamed response is watched by
    Starlette itself; this covers the wait before the first byte (a whole unary answer)."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnect(request))
    try:
        await asyncio.wait((task, watcher), return_when=asyncio.FIRST_COMPLETED)
        if not task.done() and watcher.exception() is not None:
            return await task  # the watch itself failed: no verdict on the client, just wait
    except asyncio.CancelledError:
        task.cancel()
        raise
    finally:
        watcher.cancel()
    if not task.done():
        task.cancel()
        with contextlib.suppress(BaseException):
            await task
        raise ClientDisconnected()
    return task.result()


async def _disconnect(request: Request) -> None:
    """Returns once the ASGI server reports the client gone (the body is read by now, so the
    next message is the disconnect)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return
        if not message.get("more_body"):
            await asyncio.sleep(0.5)  # a server that repeats the end of the body: poll gently


def _mirror(pool: Pool, call: Callable[[Any], Awaitable[Any]]) -> None:
    async def run() -> None:
        status = "ok"
        try:
            result = await call(pool.client)
            if isinstance(result, AsyncIterator):
                async for _ in result:  # a stream runs to its end, then is dropped
                    pass
        except Exception as exc:
            status = "error"
            logger.info(
                "shadow call failed",
                extra={"event": "rollout_shadow", "pool": pool.id, "error": str(exc)[:300]},
            )
        metrics.rollout_shadow_total().inc(1, tags={**pool.identity.tags, "status": status})

    task = asyncio.get_running_loop().create_task(run())
    _shadow_tasks.add(task)
    task.add_done_callback(_shadow_tasks.discard)


def charge(request: Request, pool: Pool, tokens: int, **units: float) -> None:
    """Count a served request's usage for its caller's tenant (metrics, and the key's
    tokens-per-minute quota). `units`: other amounts by unit (texts, audio_seconds)."""
    who = caller(request)
    tags = {"tenant": who.tenant, "model": pool.model, "pool": pool.id}
    usage = metrics.tenant_usage_total()
    for unit, amount in (("tokens", tokens), *units.items()):
        if amount:
            usage.inc(amount, tags={**tags, "unit": unit})
    quota = getattr(request.state, "quota", None)
    if quota is not None:
        quota.charge(tokens, time.monotonic())


def call_context(request: Request) -> CallContext:
    """Request id (Serve's proxy always sets x-request-id) and ingress arrival time."""
    return CallContext(
        request_id=request.headers.get("x-request-id", ""),
        arrival=getattr(request.state, "arrival", 0.0),
        routing=request.headers.get(ROUTING_HEADER),
    )


def pool_headers(pool: Pool) -> dict[str, str]:
    """Response headers that trace a response to the exact launch that produced it."""
    # identity.recipe is the ref computed once: hashing the recipe per response cost ~5% of the
    # Gateway's Python time on one-text embeddings (results/embeddings-profile-cpu).
    return {RECIPE_HEADER: pool.identity.recipe, POOL_HEADER: pool.id}


def json_bytes_response(content: bytes, pool: Pool) -> Response:
    return Response(content=content, media_type="application/json", headers=pool_headers(pool))
