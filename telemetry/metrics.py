"""Every metric this platform exports, created lazily through ray.serve.metrics.

Ray Serve adds `deployment`, `replica` and `application` tags to each; we add the model, the
pool (workload profile) and the recipe (id@version+hash). Prometheus sees them with Ray's
`ray_` prefix (e.g. ray_platform_llm_ttft_seconds_bucket).
"""

from __future__ import annotations

import functools
from typing import Any

POOL_TAGS = ("model", "pool", "profile", "recipe")

# Seconds. Fine steps under 100 ms (embeddings, TPOT), coarse up to minutes (batch jobs).
LATENCY_BUCKETS = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 0.75, 1.0, 1.5, 2.5, 5.0, 7.5,
    10.0, 20.0, 30.0, 60.0, 120.0, 300.0,
]  # fmt: skip
TOKEN_LATENCY_BUCKETS = [
    0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.04, 0.05, 0.075, 0.1, 0.15,
    0.2, 0.3, 0.5, 1.0, 2.5,
]  # fmt: skip
SIZE_BUCKETS = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048]
STARTUP_BUCKETS = [1, 2.5, 5, 10, 20, 30, 45, 60, 90, 120, 180, 300, 600, 1200]


@functools.cache
def _metric(kind: str, name: str, description: str, tags: tuple[str, ...], buckets=None) -> Any:
    from ray.serve import metrics

    if kind == "counter":
        return metrics.Counter(name, description=description, tag_keys=tags)
    if kind == "gauge":
        return metrics.Gauge(name, description=description, tag_keys=tags)
    return metrics.Histogram(name, description=description, boundaries=list(buckets), tag_keys=tags)


def counter(name: str, description: str, tags: tuple[str, ...]) -> Any:
    return _metric("counter", name, description, tags)


def gauge(name: str, description: str, tags: tuple[str, ...]) -> Any:
    return _metric("gauge", name, description, tags)


def histogram(name: str, description: str, tags: tuple[str, ...], buckets: list) -> Any:
    return _metric("histogram", name, description, tags, tuple(buckets))


# --- ingress ------------------------------------------------------------------------------------

INGRESS_TAGS = ("endpoint", *POOL_TAGS)


def requests_total() -> Any:
    return counter(
        "platform_requests_total",
        "Requests answered by the ingress, by status code and error type",
        (*INGRESS_TAGS, "status", "error_type"),
    )


def request_duration() -> Any:
    return histogram(
        "platform_request_duration_seconds",
        "Ingress arrival to last response byte (the whole stream for SSE)",
        (*INGRESS_TAGS, "status"),
        LATENCY_BUCKETS,
    )


def stream_ttft() -> Any:
    return histogram(
        "platform_stream_ttft_seconds",
        "Ingress arrival to the first streamed event: the TTFT clients see",
        INGRESS_TAGS,
        LATENCY_BUCKETS,
    )


def rejected_total() -> Any:
    return counter(
        "platform_rejected_total",
        "Requests refused with 429 because a pool's queue was full",
        (*POOL_TAGS, "reason"),
    )


def rollout_fallbacks_total() -> Any:
    return counter(
        "platform_rollout_fallbacks_total",
        "Candidate calls that failed (5xx, unavailable replica) and were retried on the current "
        "pool during a rollout",
        (*POOL_TAGS, "fallback", "error_type"),
    )


def rollout_shadow_total() -> Any:
    return counter(
        "platform_rollout_shadow_total",
        "Mirrored copies a shadow candidate answered (status ok) or failed (status error)",
        (*POOL_TAGS, "status"),
    )


def outcomes_total() -> Any:
    return counter(
        "platform_outcomes_total",
        "Outcomes reported through POST /v1/feedback",
        (*POOL_TAGS, "accepted"),
    )


def tenant_requests_total() -> Any:
    return counter(
        "platform_tenant_requests_total",
        "Requests by the caller's tenant (`open` when the Gateway runs without keys)",
        ("tenant", "endpoint", "model", "pool", "status"),
    )


def tenant_usage_total() -> Any:
    return counter(
        "platform_tenant_usage_total",
        "What a tenant's served requests used, by unit (tokens, texts, documents, audio_seconds)",
        ("tenant", "model", "pool", "unit"),
    )


# --- every pool ---------------------------------------------------------------------------------


def replica_init_seconds() -> Any:
    return histogram(
        "platform_replica_init_seconds",
        "Cold start: replica process start to ready (imports, weights, warm-up)",
        POOL_TAGS,
        STARTUP_BUCKETS,
    )


def replica_starts_total() -> Any:
    return counter("platform_replica_starts_total", "Replicas that finished starting", POOL_TAGS)


def cost_usd_total() -> Any:
    return counter(
        "platform_cost_usd_total",
        "Replica cost (recipe $/h x time): kind=busy is attributed to requests, idle is not",
        (*POOL_TAGS, "kind"),
    )


def gateway_held_requests() -> Any:
    return gauge(
        "platform_gateway_held_requests",
        "Requests the Gateway holds for a coalescing pool (waiting for a call or in one): the "
        "pool's queue, which Serve's own queue metrics do not see",
        POOL_TAGS,
    )


def pool_latency() -> Any:
    return histogram(
        "platform_pool_latency_seconds",
        "Replica arrival to the pool's answer (no ingress, no network)",
        POOL_TAGS,
        LATENCY_BUCKETS,
    )


def pool_queue_seconds() -> Any:
    return histogram(
        "platform_queue_seconds",
        "Ingress arrival to the start of compute (hop + replica queue + batch wait)",
        POOL_TAGS,
        LATENCY_BUCKETS,
    )


def batch_size() -> Any:
    return histogram(
        "platform_batch_size",
        "Items computed together: texts, (query, document) pairs, or LLM sequences per step",
        POOL_TAGS,
        SIZE_BUCKETS,
    )


def batch_seconds() -> Any:
    return histogram(
        "platform_batch_inference_seconds",
        "Compute time of one batch",
        POOL_TAGS,
        LATENCY_BUCKETS,
    )


def items_total() -> Any:
    return counter(
        "platform_items_total",
        "Work done, by unit: texts, pairs, audio_seconds, input_tokens",
        (*POOL_TAGS, "unit"),
    )


# --- LLM ----------------------------------------------------------------------------------------


def llm_ttft() -> Any:
    return histogram(
        "platform_llm_ttft_seconds",
        "Engine arrival to first token (vLLM's time_to_first_token)",
        POOL_TAGS,
        LATENCY_BUCKETS,
    )


def llm_tpot() -> Any:
    return histogram(
        "platform_llm_tpot_seconds",
        "(e2e - TTFT) / (output tokens - 1), for requests with more than one output token",
        POOL_TAGS,
        TOKEN_LATENCY_BUCKETS,
    )


def llm_itl() -> Any:
    return histogram(
        "platform_llm_inter_token_latency_seconds",
        "Every gap between consecutive output tokens",
        POOL_TAGS,
        TOKEN_LATENCY_BUCKETS,
    )


def llm_e2e() -> Any:
    return histogram(
        "platform_llm_e2e_seconds",
        "Engine arrival to last token",
        POOL_TAGS,
        LATENCY_BUCKETS,
    )


def llm_tokens_total() -> Any:
    return counter(
        "platform_llm_tokens_total",
        "Tokens by kind: prompt, generated, cached (prompt tokens served from the prefix cache)",
        (*POOL_TAGS, "kind"),
    )


def llm_requests_total() -> Any:
    return counter(
        "platform_llm_requests_total",
        "Finished engine requests by finish reason",
        (*POOL_TAGS, "finish_reason"),
    )


def llm_running() -> Any:
    return gauge("platform_llm_running_requests", "Sequences in the running batch", POOL_TAGS)


def llm_waiting() -> Any:
    return gauge("platform_llm_waiting_requests", "Requests waiting for the scheduler", POOL_TAGS)


def llm_kv_usage() -> Any:
    return gauge("platform_llm_kv_cache_usage_ratio", "Share of KV-cache blocks in use", POOL_TAGS)


def llm_prefix_cache_total() -> Any:
    return counter(
        "platform_llm_prefix_cache_tokens_total",
        "Prefix-cache lookups in tokens: kind=queries and kind=hits (hit rate = hits / queries)",
        (*POOL_TAGS, "kind"),
    )


def llm_routing_total() -> Any:
    return counter(
        "platform_llm_routing_decisions_total",
        "Replica choices of an LLM pool's prefix-affinity router: decision=affinity (the "
        "replica holding the longest prefix), least_loaded (no prefix held, or imbalance), "
        "power_of_two (asked for by the request)",
        ("pool", "decision"),
    )


# --- GPU ----------------------------------------------------------------------------------------

GPU_TAGS = (*POOL_TAGS, "gpu")


def gpu_memory_used() -> Any:
    return gauge("platform_gpu_memory_used_bytes", "Device memory in use (NVML)", GPU_TAGS)


def gpu_memory_total() -> Any:
    return gauge("platform_gpu_memory_total_bytes", "Device memory (NVML)", GPU_TAGS)


def gpu_utilization() -> Any:
    return gauge("platform_gpu_utilization_ratio", "GPU busy share over NVML's window", GPU_TAGS)


# --- speech -------------------------------------------------------------------------------------


def stt_runtime_info() -> Any:
    return gauge(
        "platform_stt_runtime_info",
        "1 for the device and compute type a speech replica really runs on; fallback is the "
        "device it fell back to ('none' when it runs as the recipe asked)",
        (*POOL_TAGS, "device", "compute_type", "fallback", "cuda_libs"),
    )
