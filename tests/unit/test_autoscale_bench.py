"""ops.bench.autoscale reads the pool's replicas, queue and latency from the platform's
/metrics text, and summarizes 1 -> N -> 1 from its samples."""

from __future__ import annotations

from types import SimpleNamespace

from ops.bench.autoscale import POOL, plot, sample, summarize, with_latency

METRICS = f"""# TYPE ray_serve_deployment_replica_healthy gauge
ray_serve_deployment_replica_healthy{{deployment="{POOL}",replica="a"}} 1.0
ray_serve_deployment_replica_healthy{{deployment="{POOL}",replica="b"}} 1.0
ray_serve_deployment_replica_healthy{{deployment="Gateway",replica="g"}} 1.0
# TYPE ray_serve_autoscaling_target_replicas gauge
ray_serve_autoscaling_target_replicas{{deployment="{POOL}"}} 3.0
# TYPE ray_serve_deployment_queued_queries gauge
ray_serve_deployment_queued_queries{{deployment="{POOL}",handle="h"}} 7.0
# TYPE ray_serve_num_ongoing_requests_at_replicas gauge
ray_serve_num_ongoing_requests_at_replicas{{deployment="{POOL}"}} 5.0
# TYPE ray_platform_gateway_held_requests gauge
ray_platform_gateway_held_requests{{pool="{POOL}",model="m"}} 12.0
ray_platform_gateway_held_requests{{pool="other",model="m"}} 3.0
# TYPE ray_platform_request_duration_seconds histogram
ray_platform_request_duration_seconds_sum{{pool="{POOL}",endpoint="/v1/embeddings"}} 2.0
ray_platform_request_duration_seconds_count{{pool="{POOL}",endpoint="/v1/embeddings"}} 10.0
"""


def test_one_scrape_gives_the_pools_numbers():
    s = sample(METRICS)
    assert (s["replicas"], s["target"], s["queued"], s["ongoing"]) == (2, 3, 7, 5)
    assert s["held"] == 12
    assert (s["latency_sum"], s["latency_count"]) == (2.0, 10.0)


def test_latency_per_interval_and_the_scale_summary(tmp_path):
    rows = [
        {"t": 0, "replicas": 1, "target": 1, "held": 0, "queued": 0, "ongoing": 0},
        {"t": 2, "replicas": 3, "target": 3, "held": 20, "queued": 9, "ongoing": 8},
        {"t": 4, "replicas": 1, "target": 1, "held": 0, "queued": 0, "ongoing": 0},
    ]
    for row, (total, count) in zip(rows, [(1.0, 10), (4.0, 20), (4.0, 20)], strict=True):
        row |= {"latency_sum": total, "latency_count": count}
    samples = with_latency(rows)
    assert [s["latency_ms"] for s in samples] == [None, 300.0, None]
    runs = {"autoscale-ramp": SimpleNamespace(records=[SimpleNamespace(ok=True)] * 3)}
    summary = summarize(samples, {"load ends": 3.0}, runs)
    assert (summary["peak_replicas"], summary["first_above_one_s"], summary["back_to_one_s"]) == (
        3,
        2,
        4,
    )
    assert summary["failed"] == {"autoscale-ramp": 0}
    plot(samples, {"load ends": 3.0}, tmp_path / "p.png")
    assert (tmp_path / "p.png").stat().st_size > 1000
