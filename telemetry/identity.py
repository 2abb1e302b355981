"""Which model, pool and recipe a replica serves: the labels of its metrics, logs and costs."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class PoolIdentity(BaseModel):
    """Carried into responses, logs, metric labels and cost attribution.

    Words used throughout: a *pool* is one Ray Serve deployment made from one recipe (its id is
    the recipe id and the `x-pool` header); a *profile* is the workload profile it serves.
    """

    model_config = ConfigDict(frozen=True)

    model: str
    """Served model id, as clients name it."""
    pool: str
    """The pool: its Ray Serve deployment name, which is the recipe id."""
    profile: str
    """Workload profile the pool serves first, e.g. fast_chat or embed."""
    recipe: str
    """id@version+hash of the recipe this pool was launched from."""
    usd_per_hour: float = 0.0
    """Cost of one replica (the recipe's cost.usd_per_hour)."""

    @property
    def tags(self) -> dict[str, str]:
        return {
            "model": self.model,
            "pool": self.pool,
            "profile": self.profile,
            "recipe": self.recipe,
        }
