"""Calls from the ingress to a pool's deployment: admission (queue limit -> 429), timeouts,
and unwrapping errors that crossed the DeploymentHandle hop."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from ray.exceptions import RayTaskError
from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError

from app.registry import Pool
from deployments.common.errors import (
    EngineUnavailable,
    Overloaded,
    RequestTimeout,
    ServingError,
)


def translate(exc: BaseException, pool: Pool) -> BaseException:
    """The error the client should see for an exception raised by a handle call."""
    if isinstance(exc, RayTaskError):
        # Ray re-raises a replica's exception as a class deriving from both RayTaskError and
        # the original; its `cause` is the original object, with every attribute intact.
        cause = getattr(exc, "cause", None)
        if isinstance(cause, ServingError):
            return cause
    if isinstance(exc, ServingError):
        return exc
    if isinstance(exc, BackPressureError):
        return Overloaded(
            f"Pool '{pool.name}' ({pool.profile}) of model '{pool.model}' is at its queue limit "
            f"({pool.recipe.deployment.max_queued_requests} waiting); retry later",
            retry_after_s=pool.recipe.deployment.retry_after_s,
        )
    if isinstance(exc, DeploymentUnavailableError):
        return EngineUnavailable(f"Pool '{pool.name}' is not available: {exc}")
    return exc


async def call(pool: Pool, method: str, *args: Any) -> Any:
    """Await one unary call on the pool's deployment within its request timeout."""
    response = getattr(pool.handle, method).remote(*args)
    try:
        return await asyncio.wait_for(_resolve(response), pool.recipe.deployment.request_timeout_s)
    except TimeoutError:
        response.cancel()
        raise RequestTimeout(
            f"Pool '{pool.name}' did not answer within "
            f"{pool.recipe.deployment.request_timeout_s:g}s"
        ) from None
    except Exception as exc:
        raise translate(exc, pool) from None


async def _resolve(response: Any) -> Any:
    return await response


async def stream(pool: Pool, method: str, *args: Any) -> AsyncIterator[Any]:
    """Iterate a streaming call; the first item is awaited here so admission errors (429) and
    request errors (400) surface before any response byte is sent."""
    generator = getattr(pool.handle.options(stream=True), method).remote(*args)
    try:
        first = await asyncio.wait_for(
            generator.__anext__(), pool.recipe.deployment.request_timeout_s
        )
    except StopAsyncIteration:
        return _empty()
    except TimeoutError:
        generator.cancel()
        raise RequestTimeout(
            f"Pool '{pool.name}' sent nothing within {pool.recipe.deployment.request_timeout_s:g}s"
        ) from None
    except Exception as exc:
        raise translate(exc, pool) from None
    return _rest(first, generator)


async def _empty() -> AsyncIterator[Any]:
    return
    yield


async def _rest(first: Any, generator: Any) -> AsyncIterator[Any]:
    try:
        yield first
        async for item in generator:
            yield item
    finally:
        # A client that went away cancels the deployment's generator, which aborts the engine.
        generator.cancel()
