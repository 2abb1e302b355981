"""The Gateway deployment: FastAPI under @serve.ingress, the only HTTP entry of the application."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from ray import serve

from app.api import create_api
from app.pools import POOL_KINDS
from app.registry import ModelRegistry
from recipes.rendered import AppArgs


@serve.deployment(name="Gateway")
@serve.ingress()
class Gateway:
    def __init__(self, args: AppArgs, handles: dict[str, Any]):
        self.args = args
        specs = [launched.recipe for launched in args.pools]
        clients = {s.id: POOL_KINDS[s.engine.kind].client(s, handles[s.id]) for s in specs}
        self.registry = ModelRegistry(specs, clients)

    def __serve_build_asgi_app__(self) -> FastAPI:
        # Built here, in the replica, so routes reach the registry without pickling the app.
        return create_api(self.registry, self.args.gateway)
