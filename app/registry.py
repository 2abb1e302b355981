"""Model registry: a model id or alias (and an optional workload-profile header) -> a pool."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from app.protocol.common import ModelCard, ModelList
from app.recipes.launch import AppArgs
from app.recipes.schema import Recipe
from deployments.common.errors import InvalidRequest, ModelNotFound

# Endpoints and the model tasks that can serve them (chat models serve completions too).
ENDPOINT_TASKS: dict[str, tuple[str, ...]] = {
    "chat": ("chat",),
    "completion": ("completion", "chat"),
    "embed": ("embed",),
    "rerank": ("rerank",),
    "transcribe": ("transcribe",),
}


@dataclass
class Pool:
    """One deployment serving one model for one or more workload profiles."""

    recipe: Recipe
    handle: Any  # ray.serve.handle.DeploymentHandle
    profiles: list[str]

    @property
    def name(self) -> str:
        return self.recipe.id

    @property
    def profile(self) -> str:
        return self.recipe.profile

    @property
    def model(self) -> str:
        return self.recipe.model.name

    @property
    def recipe_ref(self) -> str:
        return self.recipe.ref


@dataclass
class ServedModel:
    id: str
    task: str
    pools: list[Pool] = field(default_factory=list)

    @property
    def default_pool(self) -> Pool:
        return next((p for p in self.pools if p.recipe.default_pool), self.pools[0])

    def pool_for(self, profile: str | None) -> Pool:
        if profile is None:
            return self.default_pool
        for pool in self.pools:
            if profile in pool.profiles:
                return pool
        served = sorted({p for pool in self.pools for p in pool.profiles})
        raise InvalidRequest(
            f"model '{self.id}' has no pool for workload profile '{profile}' "
            f"(it serves: {', '.join(served)})",
            param="x-workload-profile",
        )


class ModelRegistry:
    def __init__(self, args: AppArgs, handles: dict[str, Any]):
        self.created = int(time.time())
        self.models: dict[str, ServedModel] = {}
        self.aliases: dict[str, Pool] = {}
        for launched in args.pools:
            recipe = launched.recipe
            pool = Pool(recipe=recipe, handle=handles[recipe.id], profiles=recipe.profiles)
            model = self.models.setdefault(
                recipe.model.name, ServedModel(id=recipe.model.name, task=recipe.task)
            )
            model.pools.append(pool)
            for alias in recipe.aliases:
                self.aliases[alias] = pool

    @property
    def pools(self) -> list[Pool]:
        return [pool for model in self.models.values() for pool in model.pools]

    def resolve(self, name: str, endpoint: str, profile: str | None = None) -> Pool:
        """The pool that serves `name` on `endpoint`; 404 for an unknown name, 400 for a model
        that cannot serve this endpoint."""
        if name in self.models:
            model = self.models[name]
            pool = model.pool_for(profile)
        elif name in self.aliases:
            pool = self.aliases[name]
            if profile is not None and profile not in pool.profiles:
                pool = self.models[pool.model].pool_for(profile)
            model = self.models[pool.model]
        else:
            raise ModelNotFound(
                f"The model '{name}' does not exist. Served models: "
                f"{', '.join(sorted([*self.models, *self.aliases]))}",
                param="model",
            )
        if model.task not in ENDPOINT_TASKS[endpoint]:
            raise InvalidRequest(
                f"model '{name}' serves '{model.task}', not this endpoint ('{endpoint}')",
                param="model",
                code="wrong_model_task",
            )
        return pool

    def model_list(self) -> ModelList:
        cards: list[ModelCard] = []
        for model in self.models.values():
            default = model.default_pool
            cards.append(
                ModelCard(
                    id=model.id,
                    created=self.created,
                    task=model.task,  # type: ignore[arg-type]
                    root=model.id,
                    recipe=default.recipe_ref,
                    pools=[f"{p.profile}:{p.recipe_ref}" for p in model.pools],
                )
            )
        for alias, pool in self.aliases.items():
            cards.append(
                ModelCard(
                    id=alias,
                    created=self.created,
                    task=self.models[pool.model].task,  # type: ignore[arg-type]
                    root=pool.model,
                    recipe=pool.recipe_ref,
                    pools=[f"{pool.profile}:{pool.recipe_ref}"],
                )
            )
        return ModelList(data=cards)
