"""Model registry: a model id or alias (and an optional workload-profile header) -> a pool."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from app.pools import PoolClient
from app.protocol.common import ModelCard, ModelList
from deployments.common.errors import InvalidRequest, ModelNotFound
from recipes.engines import Task
from recipes.schema import RecipeSpec
from telemetry.identity import PoolIdentity

# Endpoints and the model tasks that can serve them (chat models serve completions too).
ENDPOINT_TASKS: dict[Task, tuple[Task, ...]] = {
    Task.CHAT: (Task.CHAT,),
    Task.COMPLETION: (Task.COMPLETION, Task.CHAT),
    Task.EMBED: (Task.EMBED,),
    Task.RERANK: (Task.RERANK,),
    Task.TRANSCRIBE: (Task.TRANSCRIBE,),
}


def identity_of(spec: RecipeSpec) -> PoolIdentity:
    return PoolIdentity(
        model=spec.model.name,
        pool=spec.id,
        profile=spec.profile,
        recipe=spec.ref,
        usd_per_hour=spec.cost.usd_per_hour,
    )


@dataclass
class Pool:
    """One deployment (named by its recipe id) serving one model for one or more profiles."""

    spec: RecipeSpec
    client: Any  # the PoolClient subclass of its engine kind
    identity: PoolIdentity

    @property
    def id(self) -> str:
        return self.spec.id

    @property
    def profiles(self) -> list[str]:
        return self.spec.profiles

    @property
    def model(self) -> str:
        return self.spec.model.name


@dataclass
class ServedModel:
    id: str
    task: Task
    pools: list[Pool] = field(default_factory=list)

    @property
    def default_pool(self) -> Pool:
        return next((p for p in self.pools if p.spec.default_pool), self.pools[0])

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
    def __init__(self, specs: list[RecipeSpec], clients: dict[str, PoolClient]):
        self.created = int(time.time())
        self.models: dict[str, ServedModel] = {}
        self.aliases: dict[str, Pool] = {}
        for spec in specs:
            pool = Pool(spec=spec, client=clients[spec.id], identity=identity_of(spec))
            model = self.models.setdefault(
                spec.model.name, ServedModel(id=spec.model.name, task=spec.task)
            )
            model.pools.append(pool)
            for alias in spec.aliases:
                self.aliases[alias] = pool

    @property
    def pools(self) -> list[Pool]:
        return [pool for model in self.models.values() for pool in model.pools]

    def resolve(self, name: str, endpoint: Task, profile: str | None = None) -> Pool:
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
                    task=model.task,
                    root=model.id,
                    recipe=default.spec.ref,
                    pools=[f"{p.spec.profile}:{p.spec.ref}" for p in model.pools],
                )
            )
        for alias, pool in self.aliases.items():
            cards.append(
                ModelCard(
                    id=alias,
                    created=self.created,
                    task=self.models[pool.model].task,
                    root=pool.model,
                    recipe=pool.spec.ref,
                    pools=[f"{pool.spec.profile}:{pool.spec.ref}"],
                )
            )
        return ModelList(data=cards)
