"""Capacity planning arithmetic (ops/capacity) on hand-worked examples."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ops.capacity.envelope import EnvelopePoint, fit_step_model
from ops.capacity.plan import working_set_tokens
from ops.capacity.prefix import BlockCache, block_hashes, measure
from ops.capacity.queueing import (
    ClosedLoop,
    EngineLimits,
    StepModel,
    erlang_c,
    mmc_mean_wait,
    mmc_wait_quantile,
    simulate,
)
from ops.capacity.shape import rates, shape_from_log

# -- prefix reuse from hashed blocks ------------------------------------------------------------


def test_block_keys_chain_on_the_whole_prefix():
    a = block_hashes([1, 2, 3, 4, 5, 6, 7, 8, 9], 4)
    assert len(a) == 2  # the partial third block is not cached
    b = block_hashes([9, 9, 9, 9, 5, 6, 7, 8], 4)
    # block 2 has the same tokens but another prefix: another key
    assert a[1] != b[1]
    assert block_hashes([1, 2, 3, 4, 0, 0, 0, 0], 4)[0] == a[0]


def test_prefix_reuse_hand_worked():
    # block size 4:
    # [1..10]            10 tokens, nothing cached yet                      -> 0
    # [1..8, 99..102]    12 tokens, blocks 1-2 cached                       -> 8
    # [1, 2, 3, 4]        4 tokens, all cached: the last block is computed again -> 0
    # [5, 6, 7, 8, 1]     5 tokens, block [5..8] exists only after [1..4]   -> 0
    # [1..8, 99..102, 7]  13 tokens, blocks 1-3 cached                      -> 12
    prompts = [
        list(range(1, 11)),
        [*range(1, 9), 99, 100, 101, 102],
        [1, 2, 3, 4],
        [5, 6, 7, 8, 1],
        [*range(1, 9), 99, 100, 101, 102, 7],
    ]
    reuse = measure(prompts, block_size=4)
    assert reuse.prompt_tokens == 10 + 12 + 4 + 5 + 13
    assert reuse.cached_tokens == 0 + 8 + 0 + 0 + 12
    assert reuse.share == pytest.approx(20 / 44)


def test_prefix_cache_of_limited_blocks_forgets_the_oldest():
    cache = BlockCache(block_size=2, capacity_blocks=2)
    assert cache.admit([1, 2, 3, 4, 0]) == 0  # caches [1,2] and [1,2|3,4]
    assert cache.admit([7, 8, 0]) == 0  # [7,8] pushes [1,2] out
    assert cache.admit([1, 2, 3, 4, 0]) == 0  # its first block is gone: nothing matches
    assert cache.admit([1, 2, 3, 4, 5]) == 4  # cached again just now


# -- KV working set -------------------------------------------------------------------------------


def test_working_set_holds_a_shared_prefix_once():
    # 4 sequences of 500 tokens sharing a 256-token prefix: 4 x 500 - 3 x 256 = 1232 tokens;
    # SmolLM2 in float32 is 2 x 30 layers x 3 KV heads x 64 x 4 B = 46,080 B per token.
    assert working_set_tokens(4, 500, 256) == 1232
    assert working_set_tokens(1, 500, 256) == 500
    assert working_set_tokens(0, 500, 256) == 0
    assert pytest.approx(54.14, abs=0.01) == 1232 * 46_080 / 2**20  # MiB


# -- queueing at a given rate --------------------------------------------------------------------


def test_erlang_c_hand_worked():
    # M/M/1 at rho 0.5: P(wait) = rho; P(W > t) = 0.5 e^{-0.5 t}; p99 = 2 ln 50 = 7.824 s
    assert erlang_c(1, 0.5) == pytest.approx(0.5)
    assert mmc_wait_quantile(0.5, 1.0, 1, 0.99) == pytest.approx(2 * math.log(50))
    # M/M/2 with a = 1 Erlang: C = (1/2 / (1 - 1/2)) / (1 + 1 + 1) = 1/3; mean wait
    # C / (c mu - lambda) = 1/3 s; p99 = ln((1/3) / 0.01) / 1 = 3.507 s; p50: no wait
    assert erlang_c(2, 1.0) == pytest.approx(1 / 3)
    assert mmc_mean_wait(1.0, 1.0, 2) == pytest.approx(1 / 3)
    assert mmc_wait_quantile(1.0, 1.0, 2, 0.99) == pytest.approx(math.log(100 / 3))
    assert mmc_wait_quantile(1.0, 1.0, 2, 0.5) == 0.0
    assert mmc_wait_quantile(2.0, 1.0, 2, 0.99) == math.inf  # saturated


STEP = StepModel(base_s=0.010, per_seq_s=0.001, per_prefill_token_s=1e-4)


def test_engine_model_alone():
    # prompt 100, budget 64: step 1 computes 64 tokens (10 + 6.4 ms), step 2 the other 36
    # (10 + 3.6 ms): first token at 30 ms; 4 more decode steps of 11 ms: done at 74 ms.
    run = simulate(STEP, EngineLimits(4, 64), 1, [(0.0, "p", 100, 5, 0)], 10.0)
    (r,) = run.requests
    assert r.ttft == pytest.approx(0.030)
    assert r.finish == pytest.approx(0.074)
    assert r.tpot == pytest.approx(0.011)


def test_engine_model_queues_for_a_sequence_slot():
    # one slot: the second request waits for the first (15 + 11 + 11 ms), then its own
    # prefill (15 ms): TTFT 52 ms
    both = [(0.0, "p", 50, 3, 0), (0.0, "p", 50, 3, 0)]
    first, second = simulate(STEP, EngineLimits(1, 64), 1, both, 10.0).requests
    assert first.ttft == pytest.approx(0.015)
    assert second.ttft == pytest.approx(0.052)
    assert second.finish == pytest.approx(0.074)
    # two slots: the engine starts on the first arrival alone (15 ms); the second joins the
    # next step, beside the first one's decode (10 + 1 + 5 ms): TTFT 31 ms; then a step with
    # both decoding (12 ms, the first is done at 43 ms) and one with the second alone (11 ms)
    first, second = simulate(STEP, EngineLimits(2, 64), 1, both, 10.0).requests
    assert first.ttft == pytest.approx(0.015)
    assert second.ttft == pytest.approx(0.031)
    assert first.finish == pytest.approx(0.043)
    assert second.finish == pytest.approx(0.054)


def test_cached_prefix_is_not_computed_again():
    # 90 of 100 prompt tokens cached: one step of 10 + 1 ms computes the other 10
    run = simulate(STEP, EngineLimits(4, 64), 1, [(0.0, "p", 100, 1, 90)], 10.0)
    assert run.requests[0].ttft == pytest.approx(0.011)


def test_engine_model_matches_erlang_c_for_one_slot_exponential_work():
    # One slot, service time exponential with mean 0.1 s (decode steps of 10 ms, geometric
    # outputs of mean 10) at 5 req/s: M/M/1 with rho 0.5, mean wait 0.5 / (10 - 5) = 0.1 s.
    import random

    rng = random.Random(3)
    arrivals, t = [], 0.0
    while t < 4000:
        t += rng.expovariate(5.0)
        out = 1
        while rng.random() > 0.1:
            out += 1
        arrivals.append((t, "p", 1, out, 0))
    step = StepModel(base_s=0.010, per_seq_s=0.0, per_prefill_token_s=0.0)
    run = simulate(step, EngineLimits(1, 64), 1, arrivals, 4000.0, warmup_s=100)
    waits = [r.ttft - 0.010 for r in run.measured()]  # TTFT = wait + the first step
    assert sum(waits) / len(waits) == pytest.approx(mmc_mean_wait(5.0, 10.0, 1), rel=0.15)


# -- envelope -> step model ----------------------------------------------------------------------


def test_step_model_fit_recovers_a_known_engine():
    # An engine of base 10 ms, 0.2 ms per decoding sequence, 0.1 ms per prompt token and a
    # 10 ms serving path, swept closed-loop at 1, 2, 4, 8 with 100-token prompts, 20 out. At
    # c=1: TPOT 10.2 ms, TTFT 10 + 10 + 10 = 30 ms; the fit splits the 20 ms beyond the first
    # step into prefill and serving path from how the higher concurrencies behave.
    true = StepModel(base_s=0.010, per_seq_s=0.0002, per_prefill_token_s=1e-4, overhead_s=0.010)
    limits = EngineLimits(16, 2048)
    points = []
    for c in (1, 2, 4, 8):
        loop = ClosedLoop("p", c, lambda _: (100, 20, 0))
        run = simulate(true, limits, 1, [], 60.0, [loop], warmup_s=5.0)
        done = run.measured()
        points.append(
            EnvelopePoint(
                concurrency=c, requests=len(done), failed=0,
                request_throughput=len(done) / 55.0, output_throughput=20 * len(done) / 55.0,
                prefill_tokens_per_s=100 * len(done) / 55.0, input_tokens_mean=100,
                output_tokens_mean=20,
                ttft_p50_ms=1000 * float(np.median([r.ttft for r in done])), ttft_p99_ms=None,
                tpot_p50_ms=1000 * float(np.median([r.tpot for r in done])), tpot_p99_ms=None,
                e2el_p50_ms=None, e2el_p99_ms=None,
            )
        )  # fmt: skip
    assert points[0].ttft_p50_ms == pytest.approx(30.0)
    assert points[0].tpot_p50_ms == pytest.approx(10.2)
    fit = fit_step_model(points, limits)
    assert fit.per_prefill_token_s == pytest.approx(1e-4, rel=0.15)
    assert fit.ttft_overhead_s == pytest.approx(0.010, rel=0.15)
    assert fit.base_s + fit.per_seq_s == pytest.approx(0.0102)
    assert "RMS log misfit 0.0" in fit.note


# -- shape from the Gateway's request log --------------------------------------------------------


def _row(t: float, **extra) -> dict:
    return {
        "event": "request", "endpoint": "/v1/chat/completions", "model": "m", "pool": "p",
        "profile": "fast_chat", "workload_profile": "fast_chat", "status": 200, "arrival": t,
        "stream": True, "prompt_tokens": 100, "completion_tokens": 10, "cached_tokens": 25,
    } | extra  # fmt: skip


def test_rates_per_bucket():
    # 3 arrivals in [0, 10), 1 in [10, 20): 0.3 and 0.1 req/s
    r = rates([0.0, 1.0, 2.0, 15.0], 10.0, 0.0, 20.0)
    assert r.series == [0.3, 0.1]
    assert r.peak == pytest.approx(0.3)
    assert r.mean == pytest.approx(0.2)


def test_shape_from_log_rows():
    rows = [
        _row(0.0),
        _row(1.0, stream=False, cached_tokens=75),
        _row(2.0, status=429, prompt_tokens=None, completion_tokens=None, cached_tokens=None),
        _row(30.0, workload_profile="batch", endpoint="/v1/completions"),
    ]
    shape = shape_from_log(rows, 10.0, "test", "now")
    chat = shape.profile("fast_chat")
    assert chat.requests == 3 and chat.ok_share == pytest.approx(2 / 3)
    assert chat.rejected_429_share == pytest.approx(1 / 3)
    assert chat.stream_share == pytest.approx(1 / 2)  # of the answered ones
    # engine counters: (25 + 75) cached of (100 + 100) prompt tokens
    assert chat.prefix.share == pytest.approx(0.5) and chat.prefix.source == "engine-counters"
    assert chat.rate.series[0] == pytest.approx(0.3)  # 3 in the first 10 s
    assert shape.profile("batch").kind == "completion"
