"""A `ray start --head` cluster on 127.0.0.1 with the embedded default app deployed by
`serve deploy`, as an operator runs it. These tests start Ray clusters of their own and take
minutes: `make faults` runs them (tests/conftest.py leaves them out of the default suite)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.launcher import gateway_of, load_serve_config, serve_env
from recipes.paths import RESULTS_ROOT
from tests.raycluster import RayCluster, base_env, config_on_port, wait_ready

ROOT = Path(__file__).resolve().parents[2]
LOCAL_CONFIG = ROOT / "serve_configs" / "local.yaml"
ALERTS = ROOT / "ops" / "dashboards" / "alerts.yml"
RAY_BASE_PORT = int(os.environ.get("TEST_CLUSTER_RAY_PORT", "6400"))
HTTP_PORT = int(os.environ.get("TEST_CLUSTER_HTTP_PORT", "8064"))
FAULTS_RESULTS = Path(os.environ.get("FAULTS_RESULTS", RESULTS_ROOT / "faults-cpu"))


def cluster_env(http_port: int) -> dict[str, str]:
    """What `python -m app.launcher serve_configs/local.yaml --env` prints, for every node."""
    gateway = gateway_of(load_serve_config(LOCAL_CONFIG))
    return base_env(serve_env(gateway), http_port)


@pytest.fixture(scope="session")
def fault_rows() -> Iterator[list[dict]]:
    """One row per injected fault; written as results/faults-cpu/faults.{json,md} at the end."""
    rows: list[dict] = []
    yield rows
    if not rows:
        return
    FAULTS_RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    (FAULTS_RESULTS / "faults.json").write_text(
        json.dumps({"run_at": stamp, "faults": rows}, indent=2) + "\n"
    )
    lines = [
        f"# Faults injected into the embedded default app (`make faults`, {stamp})",
        "",
        "| fault | requests in flight | requests failed | clean errors (503 / SSE error) "
        "| time to recover (s) | note |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        recover = "-" if r["recover_s"] is None else f"{r['recover_s']:.1f}"
        lines.append(
            f"| {r['fault']} | {r['in_flight']} | {r['failed']} | {r['clean_errors']} "
            f"| {recover} | {r['note']} |"
        )
    (FAULTS_RESULTS / "faults.md").write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterator[RayCluster]:
    """A head node (`ray start --head`, 2 CPUs) with the app deployed by `serve deploy`."""
    ray_cluster = RayCluster(RAY_BASE_PORT, cluster_env(HTTP_PORT))
    try:
        ray_cluster.start_node("head", num_cpus=2)
        ray_cluster.wait_for_dashboard()
        config = config_on_port(LOCAL_CONFIG, HTTP_PORT, ray_cluster.temp_dir / "local.yaml")
        deployed = ray_cluster.serve("deploy", str(config))
        assert deployed.returncode == 0, deployed.stderr
        ray_cluster.ready_s = wait_ready(base_url(), timeout_s=900)
        yield ray_cluster
    finally:
        ray_cluster.stop()


@pytest.fixture(scope="module")
def prom(cluster, tmp_path_factory):
    """Debian's prometheus scraping the cluster's app with the platform's alert rules."""
    from tests.prometheus import PROMETHEUS, prometheus

    if PROMETHEUS is None:
        pytest.skip("prometheus missing: `make test` installs Debian's package")
    with prometheus(
        f"127.0.0.1:{HTTP_PORT}", tmp_path_factory.mktemp("prometheus"), [ALERTS], HTTP_PORT - 2
    ) as server:
        yield server


def base_url() -> str:
    return f"http://127.0.0.1:{HTTP_PORT}"
