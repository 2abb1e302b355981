"""Build ops/dashboards/platform.json, the Grafana dashboard of the platform's metrics.

python -m ops.dashboards.build    # rewrites platform.json (checked in; a test keeps it in sync)
"""

from __future__ import annotations

import json
from pathlib import Path

OUT = Path(__file__).with_name("platform.json")
SEL = 'pool=~"$pool"'


def q(expr: str, legend: str) -> dict:
    return {"expr": expr, "legendFormat": legend}


def quantiles(metric: str, by: str = "pool") -> list[dict]:
    return [
        q(
            f"histogram_quantile({p}, sum by (le, {by}) (rate({metric}_bucket{{{SEL}}}[5m])))",
            f"p{int(p * 100)} {{{{{by}}}}}",
        )
        for p in (0.5, 0.99)
    ]


PANELS: list[tuple[str, str, list[dict]]] = [
    ("Requests/s by pool and status", "reqps", [
        q(f"sum by (pool, status) (rate(ray_platform_requests_total{{{SEL}}}[1m]))",
          "{{pool}} {{status}}")]),
    ("Errors/s by type", "reqps", [
        q(f'sum by (pool, status, error_type) (rate(ray_platform_requests_total{{{SEL}, status=~"4..|5.."}}[1m]))',
          "{{pool}} {{status}} {{error_type}}")]),
    ("Rejected (429)/s", "reqps", [
        q(f"sum by (pool) (rate(ray_platform_rejected_total{{{SEL}}}[1m]))", "{{pool}}")]),
    ("TTFT (engine)", "s", quantiles("ray_platform_llm_ttft_seconds")),
    ("TTFT seen by clients (ingress, streams)", "s", quantiles("ray_platform_stream_ttft_seconds")),
    ("TPOT", "s", quantiles("ray_platform_llm_tpot_seconds")),
    ("Inter-token latency", "s", quantiles("ray_platform_llm_inter_token_latency_seconds")),
    ("Total latency (ingress)", "s", quantiles("ray_platform_request_duration_seconds")),
    ("Queue time (ingress arrival to compute)", "s", quantiles("ray_platform_queue_seconds")),
    ("Requests held by the Gateway (embeddings, rerank queue)", "short", [
        q(f"sum by (pool) (ray_platform_gateway_held_requests{{{SEL}}})", "{{pool}}")]),
    ("Tokens/s", "short", [
        q(f"sum by (pool, kind) (rate(ray_platform_llm_tokens_total{{{SEL}}}[1m]))",
          "{{pool}} {{kind}}")]),
    ("Running and waiting requests", "short", [
        q(f"sum by (pool) (ray_platform_llm_running_requests{{{SEL}}})", "running {{pool}}"),
        q(f"sum by (pool) (ray_platform_llm_waiting_requests{{{SEL}}})", "waiting {{pool}}")]),
    ("Batch size", "short", quantiles("ray_platform_batch_size")),
    ("KV-cache usage", "percentunit", [
        q(f"max by (pool) (ray_platform_llm_kv_cache_usage_ratio{{{SEL}}})", "{{pool}}")]),
    ("Prefix-cache hit rate", "percentunit", [
        q(f'sum by (pool) (rate(ray_platform_llm_prefix_cache_tokens_total{{{SEL}, kind="hits"}}[5m])) / '
          f'sum by (pool) (rate(ray_platform_llm_prefix_cache_tokens_total{{{SEL}, kind="queries"}}[5m]))',
          "{{pool}}")]),
    ("Items/s (texts, pairs, audio seconds)", "short", [
        q(f"sum by (pool, unit) (rate(ray_platform_items_total{{{SEL}}}[1m]))", "{{pool}} {{unit}}")]),
    ("Batch compute time", "s", quantiles("ray_platform_batch_inference_seconds")),
    ("GPU memory used / total", "bytes", [
        q(f"max by (gpu) (ray_platform_gpu_memory_used_bytes{{{SEL}}})", "used {{gpu}}"),
        q(f"max by (gpu) (ray_platform_gpu_memory_total_bytes{{{SEL}}})", "total {{gpu}}")]),
    ("GPU utilization", "percentunit", [
        q(f"max by (gpu) (ray_platform_gpu_utilization_ratio{{{SEL}}})", "{{gpu}}")]),
    ("Cold starts (replica init seconds)", "s", [
        q(f"sum by (pool) (rate(ray_platform_replica_init_seconds_sum{{{SEL}}}[1h])) / "
          f"sum by (pool) (rate(ray_platform_replica_init_seconds_count{{{SEL}}}[1h]))", "mean {{pool}}"),
        q(f"sum by (pool) (increase(ray_platform_replica_starts_total{{{SEL}}}[1h]))", "starts/h {{pool}}")]),
    ("Cost $/h by pool", "currencyUSD", [
        q(f"sum by (pool, kind) (rate(ray_platform_cost_usd_total{{{SEL}}}[5m])) * 3600",
          "{{pool}} {{kind}}")]),
    ("Cost per accepted outcome (1h)", "currencyUSD", [
        q(f"sum by (pool) (increase(ray_platform_cost_usd_total{{{SEL}}}[1h])) / "
          f'sum by (pool) (increase(ray_platform_outcomes_total{{{SEL}, accepted="true"}}[1h]))',
          "{{pool}}")]),
]  # fmt: skip


def dashboard() -> dict:
    panels = []
    for i, (title, unit, targets) in enumerate(PANELS):
        panels.append(
            {
                "id": i + 1,
                "type": "timeseries",
                "title": title,
                "datasource": {"type": "prometheus", "uid": "${datasource}"},
                "gridPos": {"h": 8, "w": 12, "x": (i % 2) * 12, "y": (i // 2) * 8},
                "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
                "targets": [dict(t, refId=chr(65 + j)) for j, t in enumerate(targets)],
            }
        )
    return {
        "title": "Inference platform",
        "uid": "inference-platform",
        "schemaVersion": 39,
        "time": {"from": "now-1h", "to": "now"},
        "refresh": "30s",
        "templating": {
            "list": [
                {"name": "datasource", "type": "datasource", "query": "prometheus"},
                {
                    "name": "pool",
                    "type": "query",
                    "datasource": {"type": "prometheus", "uid": "${datasource}"},
                    "query": "label_values(ray_platform_requests_total, pool)",
                    "includeAll": True,
                    "multi": True,
                    "current": {"text": "All", "value": "$__all"},
                },
            ]
        },
        "panels": panels,
    }


def render() -> str:
    return json.dumps(dashboard(), indent=2) + "\n"


if __name__ == "__main__":
    OUT.write_text(render())
    print(f"wrote {OUT}")
