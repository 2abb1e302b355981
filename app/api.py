"""The FastAPI application of the ingress, built inside each Gateway replica."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI

from app.auth import AuthMiddleware, KeyRing
from app.errors import install_error_handlers
from app.middleware import BodySizeLimitMiddleware
from app.observe import OutcomeIndex, RequestMetricsMiddleware
from app.registry import ModelRegistry
from app.routes import (
    audio,
    embeddings,
    feedback,
    generate,
    health,
    live,
    metrics,
    models,
    rerank,
)
from recipes.schema import GatewaySpec


def create_api(
    registry: ModelRegistry, gateway: GatewaySpec, ring_of: Callable[[], KeyRing]
) -> FastAPI:
    api = FastAPI(
        title="inference-platform",
        description="OpenAI-compatible LLM, speech-to-text, embeddings and rerank on Ray Serve",
        version="0.1.0",
    )
    api.state.registry = registry
    api.state.gateway = gateway
    api.state.outcomes = OutcomeIndex()
    api.state.prompt_counters = {}  # pool id -> app.context.PromptCounter, made on first use
    for router in (
        health.router,
        models.router,
        generate.router,
        embeddings.router,
        rerank.router,
        audio.router,
        live.router,
        feedback.router,
        metrics.router,
    ):
        api.include_router(router)
    install_error_handlers(api)
    api.add_middleware(BodySizeLimitMiddleware, max_body_bytes=gateway.max_body_bytes)
    # Before the body is read: a caller without a key costs no body read.
    api.add_middleware(AuthMiddleware, ring_of=ring_of)
    # Outermost: measures every request, a 413 from the size limit included.
    api.add_middleware(RequestMetricsMiddleware, outcomes=api.state.outcomes)
    return api
