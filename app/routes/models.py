"""GET /v1/models and GET /v1/models/{id}."""

from __future__ import annotations

from fastapi import APIRouter, Request

from app.protocol.common import ModelCard, ModelList
from app.routes.deps import caller, registry
from deployments.common.errors import ModelNotFound

router = APIRouter(tags=["models"])


@router.get("/v1/models", response_model=ModelList)
async def list_models(request: Request) -> ModelList:
    return ModelList(data=_visible(request))


@router.get("/v1/models/{model_id:path}", response_model=ModelCard)
async def get_model(model_id: str, request: Request) -> ModelCard:
    for card in _visible(request):
        if card.id == model_id:
            return card
    raise ModelNotFound(f"The model '{model_id}' does not exist", param="model")


def _visible(request: Request) -> list[ModelCard]:
    """The models the caller's key may use (all of them when the Gateway runs open)."""
    key = caller(request).key
    cards = registry(request).model_list().data
    return [c for c in cards if key is None or key.allows_model(c.id) or key.allows_model(c.root)]
