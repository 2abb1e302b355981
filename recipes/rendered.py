"""What a rendered Serve config hands the application: the recipes' runtime specs, verified by
hash (a dossier never travels to the replicas)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, model_validator

from recipes.schema import GatewaySpec, RecipeSpec


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
