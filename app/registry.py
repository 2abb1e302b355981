"""Model registry: a model id or alias (and an optional workload-profile header) -> a pool."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from app.pools import PoolClient
from app.protocol.common import ModelCard, ModelList
from deployments.common.errors import InvalidRequest, ModelNotFound
from recipes.engines import Task
from recipes.rendered import RolloutRouting
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


def identity_of(spec: RecipeSpec, name: str | None = None) -> PoolIdentity:
    """A pool's labels; `name` is its deployment name when that is not the recipe id (a
    candidate beside its current version)."""
    return PoolIdentity(
        model=spec.model.name,
        pool=name or spec.id,
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
        """The deployment name (the recipe id, or a candidate's `<id>--v<N>`)."""
        return self.identity.pool

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

    def pool_with(self, profile: str) -> Pool | None:
        """The first pool serving `profile`, if any."""
        return next((p for p in self.pools if profile in p.profiles), None)

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


@dataclass(frozen=True)
class Route:
    """Where one request goes: the pool that answers, the pool a failed candidate call is
    retried on (canary), and a pool that gets a copy whose answer is dropped (shadow)."""

    pool: Pool
    fallback: Pool | None = None
    shadow: Pool | None = None


@dataclass(frozen=True)
class Rollout:
    """A candidate pool beside the current pool of one recipe id."""

    routing: RolloutRouting
    current: Pool
    candidate: Pool

    @property
    def drained(self) -> bool:
        """Promoted, and the current pool scaled to zero: the candidate alone serves."""
        return self.routing.current_drained

    def route(self, explicit: str | None, draw: Callable[[], float]) -> Route:
        if explicit == self.candidate.id:
            return Route(self.candidate)  # an eval addresses each pool: no fallback
        if self.drained:
            return Route(self.candidate)  # no replica left to fall back on (or to address)
        if explicit == self.current.id:
            return Route(self.current)
        mode = self.routing.mode
        if mode == "promoted":
            return Route(self.candidate, fallback=self.current)
        if mode == "shadow":
            return Route(self.current, shadow=self.candidate)
        if self.routing.weight > 0 and draw() < self.routing.weight:
            return Route(self.candidate, fallback=self.current)
        return Route(self.current)


class ModelRegistry:
    def __init__(self, specs: list[RecipeSpec], clients: dict[str, PoolClient]):
        self.created = int(time.time())
        self.models: dict[str, ServedModel] = {}
        self.aliases: dict[str, Pool] = {}
        self.rollouts: dict[str, Rollout] = {}
        self.draw: Callable[[], float] = random.random
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

    def set_rollouts(self, rollouts: list[tuple[RolloutRouting, Pool]]) -> None:
        """Replace the rollouts in progress (the Gateway's user_config changed)."""
        by_id = {p.id: p for p in self.pools}
        new: dict[str, Rollout] = {}
        for routing, candidate in rollouts:
            current = by_id.get(routing.current)
            if current is None:
                raise ValueError(f"rollout of unknown pool '{routing.current}'")
            if candidate.model != current.model or str(candidate.spec.task) != str(
                current.spec.task
            ):
                raise ValueError(
                    f"candidate {candidate.spec.ref} must serve model '{current.model}' "
                    f"({current.spec.task}) like the pool it rolls out beside"
                )
            new[current.id] = Rollout(routing, current, candidate)
        self.rollouts = new

    def route(self, pool: Pool, explicit: str | None = None) -> Route:
        """The route of a request resolved to `pool`: during a rollout of that pool the
        candidate takes its share; `explicit` (the x-pool header) picks either pool of a
        rollout and is ignored otherwise."""
        rollout = self.rollouts.get(pool.id)
        if rollout is None:
            return Route(pool)
        return rollout.route(explicit, self.draw)

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
                    recipe=self._serving(default).spec.ref,
                    pools=[p for pool in model.pools for p in self._listed(pool)],
                )
            )
        for alias, pool in self.aliases.items():
            cards.append(
                ModelCard(
                    id=alias,
                    created=self.created,
                    task=self.models[pool.model].task,
                    root=pool.model,
                    recipe=self._serving(pool).spec.ref,
                    pools=self._listed(pool),
                )
            )
        return ModelList(data=cards)

    def _serving(self, pool: Pool) -> Pool:
        """The pool that answers `pool`'s requests by default: its promoted candidate, if any."""
        rollout = self.rollouts.get(pool.id)
        if rollout is not None and rollout.routing.mode == "promoted":
            return rollout.candidate
        return pool

    def _listed(self, pool: Pool) -> list[str]:
        """`profile:ref` of a pool, and of its candidate during a rollout (with its share).
        A promoted candidate whose current pool was drained is listed alone."""
        rollout = self.rollouts.get(pool.id)
        if rollout is None:
            return [f"{pool.spec.profile}:{pool.spec.ref}"]
        candidate = rollout.candidate
        if rollout.drained:
            return [
                f"{candidate.spec.profile}:{candidate.spec.ref} "
                f"(pool {candidate.id}, promoted; {pool.id} drained)"
            ]
        r = rollout.routing
        share = f"{r.weight:g}" if r.mode == "canary" else r.mode
        return [
            f"{pool.spec.profile}:{pool.spec.ref}",
            f"{candidate.spec.profile}:{candidate.spec.ref} (candidate {candidate.id}, {share})",
        ]
