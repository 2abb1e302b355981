"""The Serve application named by a rendered config (`import_path: app.application:build_app`):
one deployment per pool, and the Gateway in front of them."""

from __future__ import annotations

from typing import Any

from ray.serve import Application

from app.ingress import Gateway
from app.pools import POOL_KINDS
from app.registry import identity_of
from recipes.rendered import AppArgs


def build_app(args: dict[str, Any]) -> Application:
    app_args = AppArgs.model_validate(args)
    deployments = {}
    for launched in app_args.pools:
        spec = launched.recipe
        deployment = POOL_KINDS[spec.engine.kind].deployment()
        deployments[spec.id] = deployment.options(name=spec.id).bind(
            identity_of(spec), spec.model.source, spec.engine
        )
    return Gateway.bind(app_args, deployments)
