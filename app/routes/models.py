"""GET /v1/models and GET /v1/models/{id}."""

from __future__ import annotations

from fastapi import APIRouter, Request

from app.protocol.common import ModelCard, ModelList
from app.routes.deps import registry
from deployments.common.errors import ModelNotFound

router = APIRouter(tags=["models"])


@router.get("/v1/models", response_model=ModelList)
async def list_models(request: Request) -> ModelList:
    return registry(request).model_list()


@router.get("/v1/models/{model_id:path}", response_model=ModelCard)
async def get_model(model_id: str, request: Request) -> ModelCard:
    for card in registry(request).model_list().data:
        if card.id == model_id:
            return card
    raise ModelNotFound(f"The model '{model_id}' does not exist", param="model")
