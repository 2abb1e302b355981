"""Recipe set -> Ray Serve config (deterministic: the same recipes always render the same bytes)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from recipes.engines import LLMEngineConfig
from recipes.loader import load_set, load_set_recipes, set_path
from recipes.paths import CONFIG_ROOT
from recipes.rendered import AppArgs, LaunchedRecipe
from recipes.schema import Recipe, RecipeSet, RecipeSpec
from telemetry.tracing import EXPORTER_IMPORT_PATH

# The router's import path (a string: rendering never imports Ray Serve's router machinery).
PREFIX_ROUTER_CLASS = "deployments.llm.prefix_router:PrefixAffinityRouter"
APP_NAME = "platform"
GATEWAY_DEPLOYMENT = "Gateway"
GIB = 1024**3

# Where each set's rendered config lives; the embedded default has the short, well-known path.
RENDERED_PATHS = {"cpu-local": CONFIG_ROOT / "local.yaml"}


def rendered_path(set_id: str) -> Path:
    """Beside the set's own folder: serve_configs/rendered/ or ops/gpu/experiments/rendered/."""
    return RENDERED_PATHS.get(
        set_id, set_path(set_id).parent.parent / "rendered" / f"{set_id}.yaml"
    )


def placement_bundles(recipe: Recipe) -> list[dict[str, float]] | None:
    """One bundle per GPU of a tensor-parallel engine, packed on one node.

    The replica itself takes only CPU from bundle 0; vLLM's Ray executor places one GPU worker
    in each bundle. Single-GPU and CPU pools need no placement group.
    """
    engine = recipe.engine
    if not isinstance(engine, LLMEngineConfig):
        return None
    if engine.device != "cuda" or engine.tensor_parallel_size < 2:
        return None
    cpus = recipe.deployment.num_cpus
    return [{"CPU": cpus, "GPU": 1.0}] + [{"GPU": 1.0}] * (engine.tensor_parallel_size - 1)


def pool_deployment(recipe: Recipe, resources: dict[str, float] | None = None) -> dict[str, Any]:
    spec = recipe.deployment
    scaling = spec.autoscaling
    out: dict[str, Any] = {"name": recipe.id}
    if scaling.min_replicas == scaling.max_replicas:
        out["num_replicas"] = scaling.min_replicas
    else:
        out["autoscaling_config"] = {
            "min_replicas": scaling.min_replicas,
            "max_replicas": scaling.max_replicas,
            **(
                {"initial_replicas": scaling.initial_replicas}
                if scaling.initial_replicas is not None
                else {}
            ),
            "target_ongoing_requests": scaling.target_ongoing_requests,
            "upscale_delay_s": scaling.upscale_delay_s,
            "downscale_delay_s": scaling.downscale_delay_s,
        }
    out["max_ongoing_requests"] = spec.max_ongoing_requests
    out["max_queued_requests"] = spec.max_queued_requests
    out["health_check_period_s"] = spec.health_check_period_s
    out["health_check_timeout_s"] = spec.health_check_timeout_s
    out["graceful_shutdown_timeout_s"] = spec.graceful_shutdown_timeout_s
    actor: dict[str, Any] = {"num_cpus": spec.num_cpus}
    bundles = placement_bundles(recipe)
    actor["num_gpus"] = 0.0 if bundles else spec.num_gpus
    if spec.memory_gib is not None:
        actor["memory"] = int(spec.memory_gib * GIB)
    if resources:
        actor["resources"] = dict(sorted(resources.items()))
    out["ray_actor_options"] = actor
    routing = recipe.routing
    if routing is not None and routing.policy == "prefix_affinity":
        out["request_router_config"] = {
            "request_router_class": PREFIX_ROUTER_CLASS,
            "request_router_kwargs": {
                "imbalance_threshold": routing.imbalance_threshold,
                "block_chars": routing.block_chars,
                "max_blocks": routing.max_blocks,
            },
        }
    if bundles:
        out["placement_group_bundles"] = bundles
        out["placement_group_strategy"] = "STRICT_PACK"
    return out


def gateway_deployment(recipe_set: RecipeSet) -> dict[str, Any]:
    gw = recipe_set.gateway
    out: dict[str, Any] = {
        "name": GATEWAY_DEPLOYMENT,
        "num_replicas": gw.num_replicas,
        "max_ongoing_requests": gw.max_ongoing_requests,
        "max_queued_requests": gw.max_queued_requests,
        "ray_actor_options": {"num_cpus": gw.num_cpus},
    }
    if GATEWAY_DEPLOYMENT in recipe_set.placement:
        resources = recipe_set.placement[GATEWAY_DEPLOYMENT]
        out["ray_actor_options"]["resources"] = dict(sorted(resources.items()))
    if gw.max_queued_requests >= 0:
        out["backpressure_config"] = {"status_code": 429, "retry_after_s": gw.retry_after_s}
    return out


def render(recipe_set: RecipeSet, recipes: list[Recipe]) -> dict[str, Any]:
    args = AppArgs(
        recipe_set=recipe_set.ref,
        gateway=recipe_set.gateway,
        pools=[LaunchedRecipe(content_hash=r.content_hash, recipe=r.spec) for r in recipes],
    )
    application: dict[str, Any] = {
        "name": APP_NAME,
        "route_prefix": "/",
        "import_path": "app.application:build_app",
    }
    if recipe_set.ray_env:
        application["runtime_env"] = {"env_vars": dict(sorted(recipe_set.ray_env.items()))}
    application["logging_config"] = {"encoding": "JSON", "log_level": "INFO"}
    application["args"] = _without_unset(args.model_dump(mode="json"))
    application["deployments"] = [gateway_deployment(recipe_set)] + [
        pool_deployment(r, recipe_set.placement.get(r.id)) for r in recipes
    ]
    return {
        "proxy_location": "HeadOnly",
        "http_options": {"host": recipe_set.gateway.host, "port": recipe_set.gateway.port},
        # Off until an OTLP endpoint is configured where the app starts (the launcher turns
        # it on then); Serve traces proxy, replicas and handle hops, we add engine spans.
        "tracing_config": {
            "enabled": False,
            "exporter_import_path": EXPORTER_IMPORT_PATH,
            "sampling_ratio": recipe_set.gateway.trace_sampling_ratio,
        },
        "applications": [application],
    }


def _without_unset(args: dict[str, Any]) -> dict[str, Any]:
    """Optional recipe sections a pool leaves unset are not written: a rendered config stays
    byte-identical for every recipe that does not use them (they are outside its hash too)."""
    for pool in args["pools"]:
        for name in RecipeSpec.hashed_when_set:
            if pool["recipe"].get(name, 0) is None:
                del pool["recipe"][name]
    return args


class PlainDumper(yaml.SafeDumper):
    """No &anchors/*aliases: a rendered config is read by people, not only by parsers."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def render_text(recipe_set: RecipeSet, recipes: list[Recipe]) -> str:
    header = (
        f"# Rendered from recipe set {recipe_set.ref} by `python -m ops.recipes render`.\n"
        "# Do not edit: change the recipes and re-render.\n"
        "# Start it with `python -m app.launcher <this file>` (or `serve run` / `serve deploy`).\n"
    )
    body = yaml.dump(render(recipe_set, recipes), Dumper=PlainDumper, sort_keys=False, width=100)
    return header + body


def render_set_id(set_id: str) -> tuple[Path, str]:
    recipe_set = load_set(set_id)
    return rendered_path(set_id), render_text(recipe_set, load_set_recipes(recipe_set))
