"""Recipe set -> KubeRay `RayService` manifest: the rendered Serve config embedded as
`serveConfigV2`, a head group (controller, proxy; no model replicas) and one worker group
shaped like the set's node (CPUs, memory, GPUs), Ray's autoscaler on when a pool autoscales.

The image must hold this project's tree at IMAGE_PROJECT_ROOT and its environment, at the same
commit as the manifest (docs/deploy.md); Ray's version is the one this environment runs, so
head, workers and the Serve config agree. A set with keys (`gateway.auth.keys_env`) reads them
from a Kubernetes Secret the operator creates; the manifest only names it.
"""

from __future__ import annotations

import math
import re
from pathlib import Path, PurePosixPath
from typing import Any

import ray
import yaml

from app.launcher import serve_env
from ops.recipes.render import PlainDumper, render, rendered_path
from recipes.loader import load_set, load_set_recipes
from recipes.schema import Recipe, RecipeSet

DEFAULT_IMAGE = "inference-platform:latest"
SERVE_PORT_NAME = "serve"
# What a head pod needs for the controller, the proxy / HAProxy and the dashboard.
HEAD_CPUS, HEAD_MEMORY_GIB = 4, 16
GCS_PORT, DASHBOARD_PORT, CLIENT_PORT = 6379, 8265, 10001
LOOPBACK = ("127.0.0.1", "localhost", "::1")
IMAGE_PROJECT_ROOT = PurePosixPath("/opt/inference-platform")
KEYS_SECRET_KEY = "keys.yaml"
# A worker pod being deleted first drains its Ray node: Serve starts the node's replicas
# elsewhere (an LLM's weights load in minutes), then stops the old ones gracefully.
DRAIN_DEADLINE_S = 300


class BlockDumper(PlainDumper):
    """Multi-line strings (the embedded Serve config) as literal blocks, readable in review."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


BlockDumper.add_representer(str, _str)


class KubeRayError(ValueError):
    """The set cannot run as a RayService as it stands; the message says why."""


def kuberay_path(set_id: str) -> Path:
    """serve_configs/kuberay/<set>.yaml beside serve_configs/rendered/."""
    return rendered_path(set_id).parent.parent / "kuberay" / f"{set_id}.yaml"


def resource_name(set_id: str) -> str:
    """A Kubernetes object name (DNS-1035 label) from a set id."""
    name = re.sub(r"[^a-z0-9-]", "-", set_id.lower()).strip("-")
    return name[:63] if name[:1].isalpha() else f"set-{name}"[:63]


def keys_secret_name(set_id: str) -> str:
    return resource_name(f"{set_id}-api-keys")


def _env(recipe_set: RecipeSet) -> list[dict[str, Any]]:
    """Every Ray node starts with the set's Serve data-path switches (they are process-wide),
    the HAProxy hardening wrapper from the image, the project importable, no model hub access
    and, for a keyed set, the keys from its Secret (the Gateway may run on any node)."""
    env = serve_env(recipe_set.gateway, IMAGE_PROJECT_ROOT, pin_haproxy=False) | {
        "PYTHONPATH": str(IMAGE_PROJECT_ROOT),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "RAY_USAGE_STATS_ENABLED": "0",
    }
    out: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in sorted(env.items())]
    auth = recipe_set.gateway.auth
    if auth.keys_file:
        raise KubeRayError(
            f"set {recipe_set.id} reads its keys from a file (gateway.auth.keys_file); in "
            "Kubernetes use gateway.auth.keys_env, filled from a Secret"
        )
    if auth.keys_env:
        secret = {"name": keys_secret_name(recipe_set.id), "key": KEYS_SECRET_KEY}
        out.append({"name": auth.keys_env, "valueFrom": {"secretKeyRef": secret}})
    return out


def _drain_on_stop(recipes: list[Recipe]) -> tuple[dict, int]:
    """A worker's preStop hook and its pod's termination grace period: `ray drain-node` on the
    pod's own node (what KubeRay's autoscaler and a preemption notice do), then wait until no
    Serve replica runs there, at most the drain deadline; the replicas' graceful shutdown and
    a margin come on top."""
    wait = (
        f"for i in $(seq {DRAIN_DEADLINE_S}); do "
        "pgrep -f 'ServeReplica:' >/dev/null || exit 0; sleep 1; done"
    )
    command = (
        "ray drain-node --reason DRAIN_NODE_REASON_PREEMPTION "
        "--reason-message 'pod terminating' "
        f"--deadline-remaining-seconds {DRAIN_DEADLINE_S}; {wait}"
    )
    shutdown_s = max(r.deployment.graceful_shutdown_timeout_s for r in recipes)
    hook = {"preStop": {"exec": {"command": ["/bin/sh", "-c", command]}}}
    return hook, DRAIN_DEADLINE_S + math.ceil(shutdown_s) + 30


def _container(name: str, image: str, env: list, resources: dict, ports: list) -> dict:
    return {
        "name": name,
        "image": image,
        "env": env,
        "resources": {"requests": resources, "limits": resources},
        "ports": ports,
    }


def _autoscales(recipes: list[Recipe]) -> bool:
    return any(
        r.deployment.autoscaling.min_replicas != r.deployment.autoscaling.max_replicas
        for r in recipes
    )


def render_rayservice(
    recipe_set: RecipeSet,
    recipes: list[Recipe],
    image: str = DEFAULT_IMAGE,
    max_workers: int = 2,
) -> dict[str, Any]:
    gateway = recipe_set.gateway
    if gateway.host in LOOPBACK:
        raise KubeRayError(
            f"set {recipe_set.id} binds {gateway.host}: a RayService's Serve port must be "
            "reachable from its Kubernetes Service; render a set whose gateway.host is 0.0.0.0"
        )
    node = recipe_set.node
    env = _env(recipe_set)
    serve_port = {"containerPort": gateway.port, "name": SERVE_PORT_NAME}
    metrics_port = {"containerPort": gateway.metrics_export_port, "name": "metrics"}
    head = _container(
        "ray-head",
        image,
        env,
        {"cpu": str(HEAD_CPUS), "memory": f"{HEAD_MEMORY_GIB}Gi"},
        [
            {"containerPort": GCS_PORT, "name": "gcs-server"},
            {"containerPort": DASHBOARD_PORT, "name": "dashboard"},
            {"containerPort": CLIENT_PORT, "name": "client"},
            serve_port,
            metrics_port,
        ],
    )
    worker_resources: dict[str, str] = {"cpu": _quantity(node.cpus)}
    if node.memory_gib is not None:
        worker_resources["memory"] = f"{math.floor(node.memory_gib)}Gi"
    if node.gpus:
        worker_resources["nvidia.com/gpu"] = str(node.gpus)
    worker = _container("ray-worker", image, env, worker_resources, [serve_port, metrics_port])
    worker["lifecycle"], grace_s = _drain_on_stop(recipes)
    autoscale = _autoscales(recipes)
    group = {
        "groupName": resource_name(f"{node.accelerator}-x{node.gpus}" if node.gpus else "cpu"),
        "replicas": 1,
        "minReplicas": 1,
        "maxReplicas": max_workers if autoscale else 1,
        "rayStartParams": {"metrics-export-port": str(gateway.metrics_export_port)},
        "template": {"spec": {"containers": [worker], "terminationGracePeriodSeconds": grace_s}},
    }
    serve_config = yaml.dump(render(recipe_set, recipes), Dumper=PlainDumper, sort_keys=False)
    spec: dict[str, Any] = {
        "serveConfigV2": serve_config,
        "rayClusterConfig": {
            "rayVersion": ray.__version__,
            "enableInTreeAutoscaling": autoscale,
            "headGroupSpec": {
                # No model replica on the head: num-cpus 0 keeps Serve's replicas on workers.
                "rayStartParams": {
                    "num-cpus": "0",
                    "dashboard-host": "0.0.0.0",
                    "metrics-export-port": str(gateway.metrics_export_port),
                },
                "template": {"spec": {"containers": [head]}},
            },
            "workerGroupSpecs": [group],
        },
    }
    if autoscale:
        spec["rayClusterConfig"]["autoscalerOptions"] = {
            "upscalingMode": "Default",
            "idleTimeoutSeconds": 300,
        }
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayService",
        "metadata": {
            "name": resource_name(recipe_set.id),
            "labels": {
                "app.kubernetes.io/name": "inference-platform",
                "app.kubernetes.io/instance": resource_name(recipe_set.id),
            },
            "annotations": {"inference-platform/recipe-set": recipe_set.ref},
        },
        "spec": spec,
    }


def _quantity(cpus: float) -> str:
    return str(int(cpus)) if float(cpus).is_integer() else f"{int(cpus * 1000)}m"


def render_kuberay_set_id(set_id: str, image: str = DEFAULT_IMAGE) -> tuple[Path, str]:
    recipe_set = load_set(set_id)
    manifest = render_rayservice(recipe_set, load_set_recipes(recipe_set), image=image)
    header = (
        f"# KubeRay RayService for recipe set {recipe_set.ref}, rendered by\n"
        f"# `python -m ops.recipes render --kuberay {set_id}`. Do not edit: change the recipes\n"
        "# and re-render. `kubectl apply -f` this file (docs/deploy.md).\n"
    )
    return kuberay_path(set_id), header + yaml.dump(
        manifest, Dumper=BlockDumper, sort_keys=False, width=100
    )
