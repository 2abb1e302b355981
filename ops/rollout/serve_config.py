"""Serve configs of a rollout's steps, composed from the config that is live (pure functions on
the config's dict, so every step can be checked without a cluster).

The candidate runs in a Serve application of its own (`rollout-<id>--v<N>`, no HTTP route) and
the routing lives in the Gateway's `user_config`. So starting, re-weighting, promoting and
aborting never change the platform application's `import_path` or `args`: Serve keeps its code
version, restarts none of its replicas, and only reconfigures the Gateway in place. (A change of
`args` would give every deployment of the application a new code version and restart them all,
the current pool included.) Draining the old pool after a promote is a replica-count change of
that one deployment (see `drain`).
"""

from __future__ import annotations

import copy
from typing import Any

from ops.recipes.render import APP_NAME, GATEWAY_DEPLOYMENT, pool_deployment
from recipes.rendered import (
    GatewayConfig,
    LaunchedRecipe,
    PoolArgs,
    RolloutRouting,
    candidate_app_name,
    candidate_pool_name,
)
from recipes.schema import Recipe

BUILD_POOL = "app.application:build_pool"


def _app(config: dict[str, Any], name: str) -> dict[str, Any]:
    for app in config["applications"]:
        if app["name"] == name:
            return app
    raise KeyError(f"no application '{name}' in the live config")


def _deployment(app: dict[str, Any], name: str) -> dict[str, Any]:
    deployments = app.setdefault("deployments", [])
    for dep in deployments:
        if dep["name"] == name:
            return dep
    dep = {"name": name}
    deployments.append(dep)
    return dep


def gateway_config(config: dict[str, Any]) -> GatewayConfig:
    """The rollouts the live config's Gateway routes."""
    gateway = _deployment(copy.deepcopy(_app(config, APP_NAME)), GATEWAY_DEPLOYMENT)
    return GatewayConfig.model_validate(gateway.get("user_config") or {})


def platform_pools(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Pool id -> launched recipe (as rendered) of the platform application."""
    args = _app(config, APP_NAME).get("args") or {}
    return {p["recipe"]["id"]: p for p in args.get("pools", [])}


def routing_for(recipe: Recipe, mode: str, weight: float) -> RolloutRouting:
    return RolloutRouting(
        current=recipe.id,
        candidate_name=candidate_pool_name(recipe.id, recipe.version),
        candidate_app=candidate_app_name(recipe.id, recipe.version),
        candidate=LaunchedRecipe(content_hash=recipe.content_hash, recipe=recipe.spec),
        mode=mode,  # type: ignore[arg-type]
        weight=weight,
    )


def candidate_application(platform: dict[str, Any], recipe: Recipe) -> dict[str, Any]:
    """The candidate's own application: its pool, named `<id>--v<N>`, with the platform's
    runtime environment and logging."""
    name = candidate_pool_name(recipe.id, recipe.version)
    app: dict[str, Any] = {
        "name": candidate_app_name(recipe.id, recipe.version),
        "route_prefix": None,
        "import_path": BUILD_POOL,
    }
    for key in ("runtime_env", "logging_config"):
        if platform.get(key):
            app[key] = copy.deepcopy(platform[key])
    app["args"] = PoolArgs(
        name=name, pool=LaunchedRecipe(content_hash=recipe.content_hash, recipe=recipe.spec)
    ).model_dump(mode="json")
    app["deployments"] = [{**pool_deployment(recipe), "name": name}]
    return app


def _with_rollouts(config: dict[str, Any], rollouts: list[RolloutRouting]) -> dict[str, Any]:
    out = copy.deepcopy(config)
    gateway = _deployment(_app(out, APP_NAME), GATEWAY_DEPLOYMENT)
    # the rest of the Gateway's user_config (an auth override) stays as it is
    current = GatewayConfig.model_validate(gateway.get("user_config") or {})
    updated = current.model_copy(update={"rollouts": rollouts})
    gateway["user_config"] = updated.model_dump(mode="json", exclude_none=True)
    return out


def start(
    config: dict[str, Any], recipe: Recipe, mode: str, weight: float, route: bool = True
) -> dict[str, Any]:
    """The live config plus the candidate's application, and the Gateway routing to it
    (`route=False`: the candidate application alone, to let it start before any traffic)."""
    pools = platform_pools(config)
    if recipe.id not in pools:
        raise ValueError(
            f"no pool '{recipe.id}' in the running application (pools: {', '.join(pools)})"
        )
    current = pools[recipe.id]["recipe"]
    if current["version"] == recipe.version:
        raise ValueError(f"{recipe.id}@{recipe.version} is what the pool runs already")
    routing = routing_for(recipe, mode, weight)
    existing = gateway_config(config).rollouts
    if any(r.current == recipe.id for r in existing):
        raise ValueError(f"pool '{recipe.id}' has a rollout in progress: promote or abort it")
    out = _with_rollouts(config, [*existing, routing]) if route else copy.deepcopy(config)
    # (re)placing it: a start that stopped after launching the candidate can be run again
    out["applications"] = [a for a in out["applications"] if a["name"] != routing.candidate_app]
    out["applications"].append(candidate_application(_app(config, APP_NAME), recipe))
    return out


def reroute(config: dict[str, Any], pool: str, **changes: Any) -> dict[str, Any]:
    """The same deployments with the pool's routing changed (mode, weight)."""
    rollouts = gateway_config(config).rollouts
    if not any(r.current == pool for r in rollouts):
        raise ValueError(f"pool '{pool}' has no rollout in progress")
    updated = [r.model_copy(update=changes) if r.current == pool else r for r in rollouts]
    RolloutRouting.model_validate(next(r for r in updated if r.current == pool).model_dump())
    return _with_rollouts(config, updated)


def abort(config: dict[str, Any], pool: str, candidate_app: str | None = None) -> dict[str, Any]:
    """Without the candidate: the Gateway stops routing to it, Serve removes its application
    (also `candidate_app`, one launched by a start that never routed to it)."""
    rollouts = gateway_config(config).rollouts
    routing = next((r for r in rollouts if r.current == pool), None)
    out = _with_rollouts(config, [r for r in rollouts if r.current != pool])
    gone = {candidate_app, routing.candidate_app if routing else None} - {None}
    out["applications"] = [a for a in out["applications"] if a["name"] not in gone]
    return out


def promote(config: dict[str, Any], pool: str) -> dict[str, Any]:
    """The candidate answers every request of the pool; the current pool gets none but still
    runs, as the fallback of a failed candidate call, until `drain` takes it down."""
    return reroute(config, pool, mode="promoted", weight=1.0)


def drain(config: dict[str, Any], pool: str) -> tuple[dict[str, Any], bool]:
    """After `promote`: the Gateway stops falling back on the current pool, and the pool goes
    to zero replicas without touching the application's code version (so no other pool of the
    platform application restarts; Serve stops the pool's replicas gracefully).

    An autoscaling pool gets `min_replicas: 0` in its `autoscaling_config`: a lightweight
    update (the version hash lists only an autoscaling config's `policy`), and the autoscaler
    scales the idle pool to zero. A fixed-size pool cannot be set to zero in a config
    (`num_replicas` must be positive, and adding an `autoscaling_config` changes the code
    version): the application gets `external_scaler_enabled` (not in the code version either)
    and the caller scales the pool with Serve's scale API. Returns the config and whether that
    call is needed."""
    out = reroute(config, pool, current_drained=True)
    platform = _app(out, APP_NAME)
    deployment = _deployment(platform, pool)
    scaling = deployment.get("autoscaling_config")
    if scaling:
        kept = {k: v for k, v in scaling.items() if k != "initial_replicas"}
        deployment["autoscaling_config"] = {**kept, "min_replicas": 0}
        return out, False
    autoscaled = [d["name"] for d in platform.get("deployments", []) if d.get("autoscaling_config")]
    if autoscaled:
        raise ValueError(
            f"cannot scale the fixed-size pool '{pool}' to zero: Serve's scale API needs "
            f"external_scaler_enabled, which no autoscaling deployment may share an application "
            f"with ({', '.join(autoscaled)})"
        )
    platform["external_scaler_enabled"] = True
    return out, True


def undrain(config: dict[str, Any], pool: str, deployment: dict[str, Any]) -> dict[str, Any]:
    """A drained pool's deployment options as they were before `drain` (its replicas come
    back: an autoscaling pool by its own config; a fixed-size one is scaled by the caller)."""
    out = copy.deepcopy(config)
    platform = _app(out, APP_NAME)
    platform["deployments"] = [
        copy.deepcopy(deployment) if d["name"] == pool else d for d in platform["deployments"]
    ]
    return out


def pool_deployment_of(config: dict[str, Any], pool: str) -> dict[str, Any]:
    """The pool's deployment options in the platform application of a config."""
    return copy.deepcopy(_deployment(copy.deepcopy(_app(config, APP_NAME)), pool))
