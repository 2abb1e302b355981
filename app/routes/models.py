"""GET /v1/models and GET /v1/models/{id}."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request

from app.pools import SpeechClient
from app.protocol.common import ModelCard, ModelList
from app.routes.deps import caller, registry
from deployments.common.errors import ModelNotFound

router = APIRouter(tags=["models"])

RUNTIME_TIMEOUT_S = 1.0


@router.get("/v1/models", response_model=ModelList, response_model_exclude_none=True)
async def list_models(request: Request) -> ModelList:
    return await _with_runtime(request)


@router.get(
    "/v1/models/{model_id:path}", response_model=ModelCard, response_model_exclude_none=True
)
async def get_model(model_id: str, request: Request) -> ModelCard:
    for card in (await _with_runtime(request)).data:
        if card.id == model_id:
            return card
    raise ModelNotFound(f"The model '{model_id}' does not exist", param="model")


async def _with_runtime(request: Request) -> ModelList:
    """The model list, with where each speech pool really runs (a GPU recipe may have fallen
    back to CPU on a host without CUDA 12 libraries)."""
    listed = ModelList(data=_visible(request))
    speech = {
        pool.spec.ref: pool.client
        for pool in registry(request).pools
        if isinstance(pool.client, SpeechClient)
    }
    if not speech:
        return listed
    answers = await asyncio.gather(
        *(asyncio.wait_for(c.runtime(), RUNTIME_TIMEOUT_S) for c in speech.values()),
        return_exceptions=True,
    )
    runtimes = {ref: a for ref, a in zip(speech, answers, strict=True) if isinstance(a, dict)}
    for card in listed.data:
        card.runtime = runtimes.get(card.recipe)
    return listed


def _visible(request: Request) -> list[ModelCard]:
    """The models the caller's key may use (all of them when the Gateway runs open)."""
    key = caller(request).key
    cards = registry(request).model_list().data
    return [c for c in cards if key is None or key.allows_model(c.id) or key.allows_model(c.root)]
