"""The Serve applications named by a rendered config: the platform (`import_path:
app.application:build_app`: one deployment per pool, and the Gateway in front of them) and, during
a rollout, a candidate pool in an application of its own (`app.application:build_pool`)."""

from __future__ import annotations

from typing import Any

from ray.serve import Application

from app.ingress import Gateway
from app.pools import POOL_KINDS
from app.registry import identity_of
from recipes.rendered import AppArgs, PoolArgs


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


def build_pool(args: dict[str, Any]) -> Application:
    """One pool under its own name: a rollout's candidate, reached by the platform's Gateway
    through a handle (the application has no HTTP route)."""
    pool_args = PoolArgs.model_validate(args)
    spec = pool_args.pool.recipe
    deployment = POOL_KINDS[spec.engine.kind].deployment()
    return deployment.options(name=pool_args.name).bind(
        identity_of(spec, pool_args.name), spec.model.source, spec.engine
    )
