"""What a rendered Serve config hands the application: the recipes' runtime specs, verified by
hash (a dossier never travels to the replicas)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from recipes.schema import GatewaySpec, RecipeSpec
from recipes.tenants import AuthSpec


class LaunchedRecipe(BaseModel):
    model_config = ConfigDict(extra="forbid")

    content_hash: str
    recipe: RecipeSpec

    @model_validator(mode="after")
    def _hash_matches(self) -> LaunchedRecipe:
        if self.recipe.content_hash != self.content_hash:
            raise ValueError(
                f"recipe {self.recipe.id}@{self.recipe.version} does not match the hash it was "
                "rendered with: the rendered config was edited by hand. Edit the recipe and "
                "re-render (`make recipes-render`)"
            )
        return self


class AppArgs(BaseModel):
    """`applications[].args` of a rendered Serve config."""

    model_config = ConfigDict(extra="forbid")

    recipe_set: str
    """id@version+hash of the recipe set this config was rendered from."""
    gateway: GatewaySpec
    pools: list[LaunchedRecipe]

    @model_validator(mode="after")
    def _unique_pools(self) -> AppArgs:
        ids = [p.recipe.id for p in self.pools]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"recipe ids must be unique in one application: {dupes}")
        return self


def candidate_pool_name(recipe_id: str, version: int) -> str:
    """The deployment (pool) name of a recipe version rolled out beside its current version:
    pool ids are unique per application, so the candidate's carries its version."""
    return f"{recipe_id}--v{version}"


def candidate_app_name(recipe_id: str, version: int) -> str:
    """The Serve application that runs a candidate pool (no HTTP route of its own): adding or
    removing it leaves the platform application, and so the current pool, untouched."""
    return f"rollout-{candidate_pool_name(recipe_id, version)}"


class PoolArgs(BaseModel):
    """`applications[].args` of a candidate's application: one pool, named."""

    model_config = ConfigDict(extra="forbid")

    name: str
    pool: LaunchedRecipe


class RolloutRouting(BaseModel):
    """What the Gateway needs to route one pool's traffic during a rollout. It travels in the
    Gateway deployment's `user_config`, so changing it reconfigures the Gateway in place.

    canary: a `weight` share of the current pool's requests goes to the candidate (a failed
    candidate call is retried once on the current pool); shadow: the current pool answers and
    the candidate gets a copy whose answer is dropped; promoted: the candidate answers all
    (a failed call retried on the current pool until `current_drained`: the current pool is
    scaled to zero replicas then, so nothing may go to it any more).
    """

    model_config = ConfigDict(extra="forbid")

    current: str = Field(description="The current pool's id (a recipe id of the app)")
    candidate_name: str
    candidate_app: str
    candidate: LaunchedRecipe
    mode: Literal["canary", "shadow", "promoted"] = "canary"
    weight: float = Field(0.0, ge=0, le=1)
    current_drained: bool = False

    @model_validator(mode="after")
    def _drained_after_promote(self) -> RolloutRouting:
        if self.current_drained and self.mode != "promoted":
            raise ValueError("only a promoted candidate's current pool can be drained")
        return self


class GatewayConfig(BaseModel):
    """The Gateway's `user_config`: what may change while it runs."""

    model_config = ConfigDict(extra="forbid")

    rollouts: list[RolloutRouting] = Field(default_factory=list)
    auth: AuthSpec | None = Field(
        None,
        description="Replaces the recipe set's gateway.auth in place (keys rotated or switched "
        "on without restarting a replica)",
    )

    @model_validator(mode="after")
    def _one_per_pool(self) -> GatewayConfig:
        pools = [r.current for r in self.rollouts]
        if len(set(pools)) != len(pools):
            raise ValueError(f"one rollout per pool at a time: {pools}")
        return self
