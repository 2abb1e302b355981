"""Shared fixtures. The e2e tests share ONE real Ray Serve application (serve_configs/local.yaml,
the embedded default) started on 127.0.0.1 once per session."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[1]
LOCAL_CONFIG = ROOT / "serve_configs" / "local.yaml"
TEST_PORT = int(os.environ.get("TEST_SERVE_PORT", "8011"))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

# tests/cluster start Ray clusters of their own with `ray start` and inject faults (minutes):
# `make faults` runs them; the default suite leaves them out.
collect_ignore = [] if os.environ.get("PLATFORM_CLUSTER_TESTS") == "1" else ["cluster"]


def _gpu_available() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except Exception:
        return False


def pytest_collection_modifyitems(config, items):
    if _gpu_available():
        return
    skip = pytest.mark.skip(reason="needs an NVIDIA GPU; this machine has none (CI never does)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def otlp():
    """A local OTLP/HTTP receiver; the app exports its traces here (tracing turns on because
    the endpoint is configured before the app starts)."""
    from tests.otlp import OtlpReceiver

    receiver = OtlpReceiver()
    os.environ["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] = receiver.endpoint
    yield receiver
    receiver.close()


@pytest.fixture(scope="session")
def serve_app(otlp) -> Iterator[str]:
    """Start the embedded default app exactly as `make serve` does; yield its base URL."""
    from app.launcher import running_app

    with running_app(LOCAL_CONFIG, port=TEST_PORT) as url:
        yield url


@pytest.fixture(scope="session")
def http(serve_app: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=serve_app, timeout=120) as client:
        yield client


@pytest.fixture(scope="session")
def openai_client(serve_app: str):
    from openai import OpenAI

    return OpenAI(base_url=f"{serve_app}/v1", api_key="not-needed", max_retries=0, timeout=120)


@pytest.fixture(scope="session")
def async_http(serve_app: str):
    return lambda: httpx.AsyncClient(base_url=serve_app, timeout=120)


def assert_openai_error(response: httpx.Response, status: int, param: str | None = None) -> dict:
    """The response is OpenAI's error JSON with this status; returns the `error` object."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}, error
    assert isinstance(error["message"], str) and error["message"]
    if param is not None:
        assert error["param"] == param, error
    return error
