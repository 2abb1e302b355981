"""`python -m ops.recipes render --kuberay SET`: the RayService manifest is valid against
KubeRay's own CRD schema (tests/fixtures/kuberay), and embeds the set's Serve config."""

from __future__ import annotations

import copy
import gzip
from pathlib import Path

import jsonschema
import pytest
import yaml
from ray.serve.schema import ServeDeploySchema

from ops.recipes.kuberay import KubeRayError, render_kuberay_set_id, render_rayservice
from ops.recipes.render import render
from recipes.loader import load_set, load_set_recipes
from recipes.paths import PROJECT_ROOT
from recipes.rendered import AppArgs

CRD = Path(__file__).resolve().parents[1] / "fixtures" / "kuberay" / "ray.io_rayservices.yaml.gz"
SETS = ["h100x8-llama3-8b", "h100x4-llama3-70b"]


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft7Validator:
    crd = yaml.safe_load(gzip.decompress(CRD.read_bytes()))
    assert crd["spec"]["names"]["kind"] == "RayService"
    (v1,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    return jsonschema.Draft7Validator(v1["schema"]["openAPIV3Schema"])


def manifest(set_id: str) -> dict:
    recipe_set = load_set(set_id)
    return render_rayservice(recipe_set, load_set_recipes(recipe_set))


@pytest.mark.parametrize("set_id", SETS)
def test_rayservice_is_valid_against_the_kuberay_crd(validator, set_id):
    errors = sorted(validator.iter_errors(manifest(set_id)), key=lambda e: list(e.path))
    assert not errors, [f"{list(e.path)}: {e.message}" for e in errors]


def test_the_crd_schema_rejects_a_broken_manifest(validator):
    """The check can fail: a wrong type, or a field the CRD does not know, is reported."""
    broken = copy.deepcopy(manifest(SETS[0]))
    broken["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["replicas"] = "one"
    broken["spec"]["rayClusterConfig"]["headGroupSpec"]["rayStartParams"]["num-cpus"] = 0
    paths = {tuple(e.path) for e in validator.iter_errors(broken)}
    assert ("spec", "rayClusterConfig", "workerGroupSpecs", 0, "replicas") in paths
    assert ("spec", "rayClusterConfig", "headGroupSpec", "rayStartParams", "num-cpus") in paths


def test_rayservice_embeds_the_serve_config_and_the_node_shape():
    recipe_set = load_set("h100x8-llama3-8b")
    recipes = load_set_recipes(recipe_set)
    out = render_rayservice(recipe_set, recipes, image="registry.example/platform:abc")
    serve_config = yaml.safe_load(out["spec"]["serveConfigV2"])
    assert serve_config == render(recipe_set, recipes)
    ServeDeploySchema.model_validate(serve_config)
    AppArgs.model_validate(serve_config["applications"][0]["args"])  # hashes still match
    cluster = out["spec"]["rayClusterConfig"]
    (worker,) = cluster["workerGroupSpecs"]
    (container,) = worker["template"]["spec"]["containers"]
    assert container["image"] == "registry.example/platform:abc"
    assert container["resources"]["limits"] == {
        "cpu": "128",
        "memory": "1024Gi",
        "nvidia.com/gpu": "8",
    }
    env = {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}
    assert env["RAY_SERVE_ENABLE_HA_PROXY"] == "1"  # the set's direct-haproxy ingress
    # HAProxy runs through the hardening wrapper of the image's tree; the wrapper finds the
    # image's own haproxy (no path of this machine leaks into the manifest).
    assert env["RAY_SERVE_HAPROXY_BINARY_PATH"] == "/opt/inference-platform/app/haproxy/haproxy"
    assert "PLATFORM_HAPROXY_REAL_BINARY" not in env and env["PLATFORM_HAPROXY_HTTP_REQUEST_S"]
    assert str(PROJECT_ROOT) not in yaml.safe_dump(out)
    # The keyed Gateway (gateway.auth.keys_env) reads its keys from a Secret on every node.
    assert env["PLATFORM_API_KEYS"] == {
        "secretKeyRef": {"name": "h100x8-llama3-8b-api-keys", "key": "keys.yaml"}
    }
    # A deleted worker pod drains its Ray node first (Serve moves the replicas, then stops the
    # old ones gracefully: tests/cluster/test_multinode.py shows it on two `ray start` nodes).
    (hook_cmd,) = [" ".join(container["lifecycle"]["preStop"]["exec"]["command"])]
    assert "ray drain-node" in hook_cmd and "ServeReplica:" in hook_cmd
    assert worker["template"]["spec"]["terminationGracePeriodSeconds"] == 300 + 30 + 30
    # Its LLM pools autoscale (1..3 replicas): Ray's autoscaler is on, a second node allowed.
    assert cluster["enableInTreeAutoscaling"] is True and worker["maxReplicas"] == 2
    assert cluster["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"


def test_a_loopback_set_is_refused():
    with pytest.raises(KubeRayError, match=r"127\.0\.0\.1"):
        manifest("cpu-local")


@pytest.mark.parametrize("set_id", SETS)
def test_the_committed_manifest_is_in_sync(set_id):
    path, text = render_kuberay_set_id(set_id)
    assert path.read_text() == text
