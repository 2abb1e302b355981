"""Application builder named by the rendered Serve config (`import_path: app.builder:build_app`).

It turns the recipes in `args` into one deployment per pool plus the Gateway in front of them.
"""

from __future__ import annotations

from typing import Any

from ray.serve import Application

from app.ingress import Gateway
from app.recipes.launch import AppArgs
from app.recipes.schema import Recipe
from deployments.common.identity import PoolIdentity


def deployment_class(engine_kind: str) -> Any:
    # Imported per kind: the controller never needs vllm or faster-whisper to build the graph.
    if engine_kind == "sentence-transformers":
        from deployments.embeddings.deployment import EmbeddingDeployment

        return EmbeddingDeployment
    if engine_kind == "sentence-transformers-rerank":
        from deployments.rerank.deployment import RerankDeployment

        return RerankDeployment
    if engine_kind == "faster-whisper":
        from deployments.stt.deployment import TranscriptionDeployment

        return TranscriptionDeployment
    if engine_kind == "vllm":
        from deployments.llm.deployment import LLMDeployment

        return LLMDeployment
    raise ValueError(f"no deployment for engine kind '{engine_kind}'")


def identity_of(recipe: Recipe) -> PoolIdentity:
    return PoolIdentity(
        model=recipe.model.name,
        pool=recipe.profile,
        deployment=recipe.id,
        recipe=recipe.ref,
        usd_per_hour=recipe.cost.usd_per_hour,
    )


def build_app(args: dict[str, Any]) -> Application:
    app_args = AppArgs.model_validate(args)
    handles = {}
    for launched in app_args.pools:
        recipe = launched.recipe
        cls = deployment_class(recipe.engine.kind)
        handles[recipe.id] = cls.options(name=recipe.id).bind(
            identity_of(recipe), recipe.model.source, recipe.engine
        )
    return Gateway.bind(app_args, handles)
