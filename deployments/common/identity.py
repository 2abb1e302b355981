"""Which model, pool and recipe a replica serves, and the context each call carries."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict


class PoolIdentity(BaseModel):
    """Carried into responses, logs, metric labels and cost attribution."""

    model_config = ConfigDict(frozen=True)

    model: str
    """Served model id, as clients name it."""
    pool: str
    """Workload profile of this pool, e.g. fast_chat or embed."""
    deployment: str
    """Ray Serve deployment name of this pool."""
    recipe: str
    """id@version+hash of the recipe this pool was launched from."""
    usd_per_hour: float = 0.0
    """Cost of one replica (the recipe's cost.usd_per_hour)."""

    @property
    def tags(self) -> dict[str, str]:
        return {"model": self.model, "pool": self.pool, "recipe": self.recipe}


@dataclass(frozen=True)
class CallContext:
    """What the ingress hands every pool call besides the request itself."""

    request_id: str
    arrival: float
    """Wall-clock time the ingress received the request (for queue time across the hop)."""
