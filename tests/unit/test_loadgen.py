"""The load generator's math on synthetic timings (hand-computed), arrivals and requests."""

from __future__ import annotations

import itertools
import random

import pytest
from pydantic import ValidationError

from ops.loadgen.cli import meets, ratios
from ops.loadgen.metrics import RequestRecord, measured, meets_slo, summarize
from ops.loadgen.requests import RequestFactory
from ops.loadgen.runner import arrival_times, on_sse_line, plan
from ops.loadgen.scenario import SLO, Arrival, Lengths, Profile, Scenario, load_scenario


def rec(send, chunks, end, out, status=200, inp=10, profile="p"):
    return RequestRecord(
        profile=profile, send=send, end=end, status=status, chunks=list(chunks),
        input_tokens=inp, output_tokens=out,
    )  # fmt: skip


def test_per_request_definitions():
    r = rec(send=10.0, chunks=[10.2, 10.3, 10.5, 10.6], end=10.6, out=4)
    assert r.ttft == pytest.approx(0.2)
    assert r.e2el == pytest.approx(0.6)
    assert r.tpot == pytest.approx((0.6 - 0.2) / 3)
    assert r.itls == pytest.approx([0.1, 0.2, 0.1])


def test_stream_chunks_count_as_vllm_bench_counts_them(monkeypatch):
    """A chunk with a choice is a token even when its text is empty (a partial UTF-8 byte); the
    usage chunk and [DONE] are not, so E2EL ends at the last token chunk."""
    import ops.loadgen.runner as runner

    clock = iter([1.0, 1.5, 2.0])
    monkeypatch.setattr(runner.time, "perf_counter", lambda: next(clock))
    r = rec(send=0.8, chunks=[], end=9.0, out=0)
    for line in (
        b'data: {"choices": [{"index": 0, "text": ""}]}',
        b'data: {"choices": [{"index": 0, "delta": {"content": "ab"}}]}',
        b'data: {"choices": [{"index": 0, "text": "c", "finish_reason": "length"}]}',
        b'data: {"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 3}}',
        b"data: [DONE]",
    ):
        on_sse_line(line, r)
    assert r.chunks == [1.0, 1.5, 2.0]
    assert (r.input_tokens, r.output_tokens) == (5, 3)
    assert r.ttft == pytest.approx(0.2) and r.e2el == pytest.approx(1.2)
    assert r.tpot == pytest.approx((1.2 - 0.2) / 2)


def test_one_output_token_has_no_tpot():
    r = rec(send=0.0, chunks=[0.5], end=0.5, out=1)
    assert r.tpot is None and r.itls == []
    assert meets_slo(r, SLO(tpot_ms=1, ttft_ms=600))  # vLLM's rule: no TPOT to miss


def test_summary_over_a_window_by_hand():
    records = [
        rec(0.0, [0.1, 0.2, 0.3], 0.3, out=3, inp=100),  # ttft .1 tpot .1 e2el .3
        rec(1.0, [1.3, 1.5], 1.5, out=2, inp=50),  # ttft .3 tpot .2 e2el .5
        rec(2.0, [], 2.1, out=0, status=429),  # failed: counted, never in latencies
        rec(3.0, [3.2], 3.2, out=1, inp=10),  # ttft .2, no tpot
    ]
    s = summarize(records, duration_s=4.0, slo=SLO(ttft_ms=250, e2e_ms=400))
    assert (s["requests"], s["completed"], s["failed"]) == (4, 3, 1)
    assert s["error_rate"] == 0.25 and s["rejected_429_rate"] == 0.25
    assert s["request_throughput"] == pytest.approx(3 / 4)
    assert s["output_throughput"] == pytest.approx(6 / 4)
    assert s["total_token_throughput"] == pytest.approx((160 + 6) / 4)
    assert s["ttft_s"]["mean"] == pytest.approx(0.2)
    assert s["ttft_s"]["p50"] == pytest.approx(0.2)
    assert s["tpot_s"]["p50"] == pytest.approx(0.15)  # median of .1 and .2
    assert s["itl_s"]["mean"] == pytest.approx((0.1 + 0.1 + 0.2) / 3)
    assert s["e2el_s"]["p99"] == pytest.approx(0.3 + 0.98 * 0.2)  # numpy linear percentile
    # goodput: request 1 (ttft .1, e2el .3) and request 4 (ttft .2, e2el .2) meet both SLOs
    assert s["goodput"] == pytest.approx(2 / 4) and s["slo_attainment"] == pytest.approx(0.5)


def test_empty_and_all_failed():
    s = summarize([rec(0, [], 1, out=0, status=500)], duration_s=1.0)
    assert s["completed"] == 0 and s["ttft_s"]["p50"] is None and s["error_rate"] == 1.0
    assert summarize([], duration_s=1.0)["requests"] == 0


def test_warmup_and_cooldown_are_left_out():
    records = [rec(t, [t + 0.1], t + 0.1, out=1) for t in (0.5, 2.0, 5.0, 9.5)]
    assert [r.send for r in measured(records, 1.0, 9.0)] == [2.0, 5.0]


def test_poisson_and_gamma_rates_and_burstiness():
    rng = random.Random(0)
    poisson = arrival_times(Arrival(type="poisson", rate=10), rng, 200.0, None)
    assert len(poisson) / 200.0 == pytest.approx(10, rel=0.05)
    gaps = [b - a for a, b in itertools.pairwise(poisson)]
    bursty = arrival_times(Arrival(type="gamma", rate=10, burstiness=0.25), rng, 200.0, None)
    bursty_gaps = [b - a for a, b in itertools.pairwise(bursty)]

    def cv(xs):
        mean = sum(xs) / len(xs)
        return (sum((x - mean) ** 2 for x in xs) / len(xs)) ** 0.5 / mean

    assert cv(gaps) == pytest.approx(1.0, rel=0.1)  # exponential gaps
    assert cv(bursty_gaps) == pytest.approx(2.0, rel=0.15)  # gamma shape k: cv = 1/sqrt(k)
    constant = arrival_times(Arrival(type="constant", rate=4), rng, 10.0, None)
    assert len(constant) == 39 and constant[1] - constant[0] == pytest.approx(0.25)
    assert len(arrival_times(Arrival(rate=1), rng, 0, 7)) == 7


def test_ramp_rises():
    times = arrival_times(Arrival(type="ramp", start_rate=1, rate=20), random.Random(1), 60, None)
    first, last = sum(t < 20 for t in times), sum(t >= 40 for t in times)
    assert last > 2 * first


def test_plan_is_seeded_and_splits_by_share():
    scenario = Scenario(
        name="s",
        seed=3,
        requests=400,
        arrival=Arrival(rate=50),
        profiles=[
            Profile(name="a", kind="chat", model="m", share=3),
            Profile(name="b", kind="embed", model="e", share=1),
        ],
    )
    one, two = plan(scenario), plan(scenario)
    assert [(t, p.name) for t, p in one.open_loop] == [(t, p.name) for t, p in two.open_loop]
    share_a = sum(p.name == "a" for _, p in one.open_loop) / 400
    assert share_a == pytest.approx(0.75, abs=0.06)


def test_request_lengths_and_prefix_reuse():
    profile = Profile(
        name="chat",
        kind="chat",
        model="m",
        arrival=Arrival(),
        input=Lengths(dist="fixed", value=20),
        output=Lengths(dist="uniform", min=5, max=9),
        prefix={"shared_prefix_tokens": 30, "sessions": 2, "turns": 3, "hit_rate": 1.0},
    )
    factory = RequestFactory(profile, seed=1)
    path, body, in_tokens, out_tokens = factory.build()
    assert path == "/v1/chat/completions" and in_tokens == 20 and 5 <= out_tokens <= 9
    assert body["messages"][0]["role"] == "system"
    assert len(body["messages"][0]["content"].split()) == 30
    assert body["ignore_eos"] is True and body["max_tokens"] == out_tokens
    second = factory.build()[1]["messages"]
    # the next turn resends the whole history: a prefix the cache can reuse
    assert second[: len(body["messages"])] == body["messages"]
    again = RequestFactory(profile, seed=1).build()[1]
    assert again == body  # reproducible from the seed


def test_shipped_scenarios_validate():
    for name in ("fast-chat", "long-context", "batch", "ttft-critical", "mixed-shared",
                 "mixed-dedicated", "embed", "rerank", "stt", "fast-chat-cpu"):  # fmt: skip
        assert load_scenario(name).profiles


def test_scenario_validation():
    with pytest.raises(ValidationError, match="exactly one of duration_s or requests"):
        Scenario(name="x", profiles=[Profile(name="a", kind="chat", model="m", arrival=Arrival())])
    with pytest.raises(ValidationError, match="share but the scenario has no arrival"):
        Scenario(
            name="x", requests=1, profiles=[Profile(name="a", kind="chat", model="m", share=1)]
        )


def test_sweep_point_and_compare_ratios():
    good = summarize([rec(0, [0.1, 0.2], 0.2, out=2)], 1.0)
    assert meets(good, SLO(ttft_ms=200, tpot_ms=200))
    assert not meets(good, SLO(ttft_ms=50))
    slower = summarize([rec(0, [0.2, 0.3], 0.3, out=2)], 2.0)
    r = ratios(good, slower)
    assert r["output_throughput_b_over_a"] == pytest.approx(0.5)
    assert r["ttft_p50_ms_b_minus_a"] == pytest.approx(100.0)


def test_warmup_requests_are_sent_first_and_left_out():
    """The runner's own scheduling, with a recording sender standing in for an endpoint."""
    import asyncio

    from ops.loadgen.runner import run

    def scenario(warmup: int) -> Scenario:
        return Scenario(
            name="w", seed=1, requests=4, warmup_requests=warmup,
            profiles=[Profile(name="a", kind="completion", model="m",
                              arrival=Arrival(type="concurrency", concurrency=1))],
        )  # fmt: skip

    def recorder(sent: list[str]):
        async def send(profile, path, body, in_tokens, out_tokens):
            sent.append(body["prompt"])
            return rec(send=0.0, chunks=[0.1], end=0.1, out=out_tokens, profile=profile.name)

        return send

    plain, warmed = [], []
    asyncio.run(run(scenario(0), recorder(plain), "t", progress=False))
    result = asyncio.run(run(scenario(3), recorder(warmed), "t", progress=False))
    assert len(warmed) == 7 and len(result.records) == 4
    assert warmed[3:] == plain  # warm-ups draw from their own seed: the measured run is unchanged
