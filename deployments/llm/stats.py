"""A vLLM stat logger that publishes the engine's scheduler and request statistics as this
platform's metrics, labelled by model, pool and recipe (vLLM's own vllm:* metrics are published
beside it by vLLM's RayPrometheusStatLogger)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from telemetry import metrics

# vLLM calls record() every engine step (~100/s on a GPU) with one inter-token gap per running
# sequence. A Ray metric observation costs tens of microseconds of the engine frontend's event
# loop, the loop that also admits new requests: at 64 sequences, observing every gap (and
# setting gauges every step) starved admission on the lent H100. So gauges are set at most
# GAUGE_PERIOD_S apart and inter-token gaps are sampled, evenly, ITL_SAMPLES per step.
GAUGE_PERIOD_S = 0.25
ITL_SAMPLES = 4


def pool_stat_logger_factory(tags: dict[str, str]) -> Callable[[Any, int], Any]:
    """vLLM calls the factory with (vllm_config, engine_index) in the replica process."""
    from vllm.v1.metrics.loggers import StatLoggerBase

    class PoolStatLogger(StatLoggerBase):
        def __init__(self, vllm_config: Any, engine_index: int = 0):
            self.tags = tags
            self._next_gauges = 0.0

        def record(
            self,
            scheduler_stats: Any,
            iteration_stats: Any,
            mm_cache_stats: Any = None,
            engine_idx: int = 0,
        ) -> None:
            if scheduler_stats is not None:
                self._scheduler(scheduler_stats)
            if iteration_stats is not None:
                self._iteration(iteration_stats)

        def _scheduler(self, stats: Any) -> None:
            now = time.monotonic()
            if now >= self._next_gauges:
                self._next_gauges = now + GAUGE_PERIOD_S
                metrics.llm_running().set(stats.num_running_reqs, tags=self.tags)
                metrics.llm_waiting().set(stats.num_waiting_reqs, tags=self.tags)
                metrics.llm_kv_usage().set(stats.kv_cache_usage, tags=self.tags)
                if stats.num_running_reqs:
                    metrics.batch_size().observe(stats.num_running_reqs, tags=self.tags)
            prefix = stats.prefix_cache_stats
            if prefix is not None and prefix.queries:
                counter = metrics.llm_prefix_cache_total()
                counter.inc(prefix.queries, tags={**self.tags, "kind": "queries"})
                if prefix.hits:
                    counter.inc(prefix.hits, tags={**self.tags, "kind": "hits"})

        def _iteration(self, stats: Any) -> None:
            for ttft in stats.time_to_first_tokens_iter:
                metrics.llm_ttft().observe(ttft, tags=self.tags)
            gaps = stats.inter_token_latencies_iter
            if gaps:
                itl = metrics.llm_itl()
                for gap in gaps[:: max(1, len(gaps) // ITL_SAMPLES)][:ITL_SAMPLES]:
                    itl.observe(gap, tags=self.tags)
            for done in stats.finished_requests:
                self._finished(done)

        def _finished(self, done: Any) -> None:
            metrics.llm_e2e().observe(done.e2e_latency, tags=self.tags)
            if done.num_generation_tokens > 1:
                metrics.llm_tpot().observe(done.mean_time_per_output_token, tags=self.tags)
            tokens = metrics.llm_tokens_total()
            tokens.inc(done.num_prompt_tokens, tags={**self.tags, "kind": "prompt"})
            if done.num_generation_tokens:
                tokens.inc(done.num_generation_tokens, tags={**self.tags, "kind": "generated"})
            if done.num_cached_tokens:
                tokens.inc(done.num_cached_tokens, tags={**self.tags, "kind": "cached"})
            reason = str(getattr(done.finish_reason, "name", done.finish_reason)).lower()
            metrics.llm_requests_total().inc(1, tags={**self.tags, "finish_reason": reason})

        def log_engine_initialized(self) -> None:
            pass

    return PoolStatLogger
