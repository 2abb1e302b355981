"""Which model, pool and recipe a replica serves: carried into responses, logs and metric labels."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class PoolIdentity(BaseModel):
    model_config = ConfigDict(frozen=True)

    model: str
    """Served model id, as clients name it."""
    pool: str
    """Workload profile of this pool, e.g. fast_chat or embed."""
    deployment: str
    """Ray Serve deployment name of this pool."""
    recipe: str
    """id@version+hash of the recipe this pool was launched from."""
