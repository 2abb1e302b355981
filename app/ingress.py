"""The Gateway deployment: FastAPI under @serve.ingress, the only HTTP entry of the application."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from ray import serve

from app.api import create_api
from app.recipes.launch import AppArgs
from app.registry import ModelRegistry


@serve.deployment(name="Gateway")
@serve.ingress()
class Gateway:
    def __init__(self, args: AppArgs, handles: dict[str, Any]):
        self.args = args
        self.registry = ModelRegistry(args, handles)

    def __serve_build_asgi_app__(self) -> FastAPI:
        # Built here, in the replica, so routes reach the registry without pickling the app.
        return create_api(self.registry, self.args.gateway, self.args.recipe_set)
