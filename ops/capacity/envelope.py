"""A pool's measured envelope: throughput against TTFT/TPOT p50/p99 per load step, prefill
tokens/s and KV-cache usage, from an `ops.loadgen` concurrency sweep on the running pool; and
the engine step model (queueing.StepModel) fitted to it."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np
from pydantic import BaseModel, Field

from ops.capacity.queueing import ClosedLoop, EngineLimits, StepModel, simulate
from ops.loadgen.scenario import SLO, Arrival, Lengths, Profile, Scenario

KV_GAUGE = "platform_llm_kv_cache_usage_ratio"
DEFAULT_BATCHED_TOKENS = 2048


class EnvelopePoint(BaseModel):
    concurrency: int
    requests: int
    failed: int
    request_throughput: float
    output_throughput: float
    prefill_tokens_per_s: float = Field(description="prompt tokens sent per second at this step")
    input_tokens_mean: float
    output_tokens_mean: float
    ttft_p50_ms: float | None
    ttft_p99_ms: float | None
    tpot_p50_ms: float | None
    tpot_p99_ms: float | None
    e2el_p50_ms: float | None
    e2el_p99_ms: float | None
    kv_usage_max: float | None = None
    kv_usage_mean: float | None = None
    meets_slo: bool | None = None


class Envelope(BaseModel):
    recipe: str = Field(description="id@version+hash measured")
    measured: str = Field(description="where and when")
    source: str = Field(description="the sweep, or the records it was derived from")
    slo: SLO
    points: list[EnvelopePoint]
    step_model: StepModelFit
    max_concurrency_within_slo: int | None

    def model(self) -> StepModel:
        f = self.step_model
        return StepModel(f.base_s, f.per_seq_s, f.per_prefill_token_s, f.ttft_overhead_s)


class StepModelFit(BaseModel):
    base_s: float
    per_seq_s: float
    per_prefill_token_s: float
    ttft_overhead_s: float = 0.0
    prefill_capacity_tokens_per_s: float | None
    note: str = ""


Envelope.model_rebuild()


def load_envelope(path: str | Path) -> Envelope:
    from recipes.paths import PROJECT_ROOT

    path = Path(path)
    if not path.is_absolute() and not path.exists():
        path = PROJECT_ROOT / path
    return Envelope.model_validate_json(path.read_text())


def fit_step_model(points: list[EnvelopePoint], limits: EngineLimits) -> StepModelFit:
    """Step time = base + per_seq x decoding sequences + per_prefill_token x prompt tokens, and
    a fixed serving path (overhead) before a request reaches the engine.

    At the lowest concurrency c0 nothing else runs: TPOT = base + per_seq c0 and TTFT =
    overhead + base + P k (prompts of P tokens). How the rest of that TTFT splits between
    prefill (k) and the serving path, and what a sequence adds to a step (per_seq), shows at
    higher concurrency, where prefills and decodes share steps in ways no closed formula gets
    right (closed loops fall into waves: everyone prefills, then everyone decodes). So each
    candidate split is simulated at every measured concurrency, and the one whose throughput,
    TTFT p50 and TPOT p50 are closest (squared log ratios) to the measured ones is kept."""
    usable = [p for p in points if p.tpot_p50_ms and p.ttft_p50_ms and p.failed == 0 and p.requests]
    if len(usable) < 2:
        raise ValueError("an envelope needs two load steps with TTFT and TPOT to fit a model")
    low = min(usable, key=lambda p: p.concurrency)
    prompt = max(1, round(low.input_tokens_mean))
    output = max(2, round(low.output_tokens_mean))
    tpot0, ttft0 = low.tpot_p50_ms / 1000, low.ttft_p50_ms / 1000
    best: tuple[float, StepModelFit] | None = None
    for seq_share in (0.0, 0.005, 0.01, 0.02, 0.04, 0.08):
        per_seq = tpot0 * seq_share
        base = max(1e-4, tpot0 - per_seq * low.concurrency)
        for prefill_share in np.linspace(0.05, 1.0, 20):
            rest = max(0.0, ttft0 - base - per_seq)
            fit = StepModelFit(
                base_s=base,
                per_seq_s=per_seq,
                per_prefill_token_s=prefill_share * rest / prompt,
                ttft_overhead_s=(1 - prefill_share) * rest,
                prefill_capacity_tokens_per_s=prompt / (prefill_share * rest) if rest else None,
            )
            error = sum(_misfit(fit, p, prompt, output, limits) for p in usable)
            if best is None or error < best[0]:
                best = (error, fit)
    assert best is not None
    error, fit = best
    fit.note = (
        f"simulated against concurrency {[p.concurrency for p in usable]} ({prompt} in / "
        f"{output} out): RMS log misfit {np.sqrt(error / (3 * len(usable))):.3f} over throughput, "
        "TTFT p50 and TPOT p50"
    )
    return fit


def _misfit(
    fit: StepModelFit, point: EnvelopePoint, prompt: int, output: int, limits: EngineLimits
) -> float:
    step = StepModel(fit.base_s, fit.per_seq_s, fit.per_prefill_token_s, fit.ttft_overhead_s)
    e2e = (point.e2el_p50_ms or (point.ttft_p50_ms + output * point.tpot_p50_ms)) / 1000
    duration = max(20 * e2e, 10.0)
    loop = ClosedLoop("fit", point.concurrency, lambda _: (prompt, output, 0))
    run = simulate(step, limits, 1, [], duration, [loop], warmup_s=4 * e2e)
    done = [r for r in run.measured() if r.finish is not None]
    if not done:
        return 1e9
    window = duration - 4 * e2e
    ttft = float(np.median([r.ttft for r in done]))
    tpot = float(np.median([r.tpot for r in done if r.tpot is not None]))
    return (
        np.log(len(done) / window / point.request_throughput) ** 2
        + np.log(ttft * 1000 / point.ttft_p50_ms) ** 2
        + np.log(tpot * 1000 / point.tpot_p50_ms) ** 2
    )


def limits_of(recipe) -> EngineLimits:
    """The engine's batch limits: sequence slots (at most the replica's ongoing requests) and
    tokens per step."""
    engine = recipe.engine
    tokens = int(engine.engine_kwargs.get("max_num_batched_tokens", DEFAULT_BATCHED_TOKENS))
    seqs = min(engine.max_num_seqs, recipe.deployment.max_ongoing_requests)
    return EngineLimits(max_num_seqs=seqs, max_num_batched_tokens=tokens)


def point_of(concurrency: int, summary: dict, slo: SLO, kv: list[float]) -> EnvelopePoint:
    def ms(key: str, p: str) -> float | None:
        value = summary[key][p]
        return None if value is None else value * 1000

    done = max(summary["completed"], 1)
    from ops.loadgen.cli import meets

    return EnvelopePoint(
        concurrency=concurrency,
        requests=summary["requests"],
        failed=summary["failed"],
        request_throughput=summary["request_throughput"],
        output_throughput=summary["output_throughput"],
        prefill_tokens_per_s=summary["input_tokens"] / summary["duration_s"]
        if summary["duration_s"]
        else 0.0,
        input_tokens_mean=summary["input_tokens"] / done,
        output_tokens_mean=summary["output_tokens"] / done,
        ttft_p50_ms=ms("ttft_s", "p50"),
        ttft_p99_ms=ms("ttft_s", "p99"),
        tpot_p50_ms=ms("tpot_s", "p50"),
        tpot_p99_ms=ms("tpot_s", "p99"),
        e2el_p50_ms=ms("e2el_s", "p50"),
        e2el_p99_ms=ms("e2el_s", "p99"),
        kv_usage_max=max(kv) if kv else None,
        kv_usage_mean=float(np.mean(kv)) if kv else None,
        meets_slo=meets(summary, slo),
    )


def calibration_scenario(
    model: str, input_tokens: int, output_tokens: int, duration_s: float, slo: SLO
) -> Scenario:
    """One streamed chat profile of fixed lengths (prefix caching sees no reuse: random words),
    closed loop; the sweep sets its concurrency."""
    return Scenario(
        name=f"calibrate-{model}",
        seed=7,
        duration_s=duration_s,
        warmup_s=min(5.0, duration_s / 5),
        warmup_requests=4,
        profiles=[
            Profile(
                name="calibrate",
                kind="chat",
                model=model,
                arrival=Arrival(type="concurrency", concurrency=1),
                input=Lengths(value=input_tokens),
                output=Lengths(value=output_tokens),
                slo=slo,
            )
        ],
    )


class KvSampler:
    """Samples the pools' KV-cache usage gauge from the app's /metrics while a step runs."""

    def __init__(self, metrics_url: str, pool: str, period_s: float = 1.0):
        self.url, self.pool, self.period = metrics_url, pool, period_s
        self.values: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> KvSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        import httpx

        while not self._stop.wait(self.period):
            try:
                text = httpx.get(self.url, timeout=5).text
            except httpx.HTTPError:
                continue
            for line in text.splitlines():
                if KV_GAUGE in line and f'pool="{self.pool}"' in line and not line.startswith("#"):
                    self.values.append(float(line.rsplit(" ", 1)[1]))


def calibrate(
    recipe,
    url: str,
    concurrencies: list[int],
    input_tokens: int,
    output_tokens: int,
    duration_s: float,
    log=print,
) -> Envelope:
    from ops.loadgen.cli import _with_load, execute

    slo = SLO(
        ttft_ms=recipe.slo.ttft_p99_ms, tpot_ms=recipe.slo.tpot_p99_ms, e2e_ms=recipe.slo.e2e_p99_ms
    )
    base = calibration_scenario(recipe.model.name, input_tokens, output_tokens, duration_s, slo)
    points = []
    for c in sorted(concurrencies):
        with KvSampler(f"{url.rstrip('/')}/metrics", recipe.id) as kv:
            result = execute(_with_load(base, "calibrate", "concurrency", c), url, progress=False)
        point = point_of(c, result.summary["calibrate"], slo, kv.values)
        points.append(point)
        log(
            f"c={c}: {point.request_throughput:.2f} req/s, {point.output_throughput:.1f} out tok/s"
            f", TTFT p50/p99 {point.ttft_p50_ms or 0:.0f}/{point.ttft_p99_ms or 0:.0f} ms, TPOT "
            f"p50/p99 {point.tpot_p50_ms or 0:.1f}/{point.tpot_p99_ms or 0:.1f} ms, KV max "
            f"{point.kv_usage_max}"
        )
    within = [p.concurrency for p in points if p.meets_slo]
    return Envelope(
        recipe=recipe.ref,
        measured=f"{url} {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}",
        source=f"ops.loadgen concurrency sweep {concurrencies}, {input_tokens} in / "
        f"{output_tokens} out, {duration_s:g} s per step",
        slo=slo,
        points=points,
        step_model=fit_step_model(points, limits_of(recipe)),
        max_concurrency_within_slo=max(within) if within else None,
    )


def from_summaries(
    recipe, files: list[Path], slo: SLO, measured: str, input_tokens: int
) -> Envelope:
    """An envelope from load runs already on disk (`ops/gpu/fair.py`'s per-round summaries:
    concurrency, throughput, TTFT/TPOT p50), the median of the rounds at each concurrency."""
    by_c: dict[int, list[dict]] = {}
    for f in files:
        row = json.loads(Path(f).read_text())
        by_c.setdefault(int(row["concurrency"]), []).append(row)
    points = []
    for c, rows in sorted(by_c.items()):

        def med(key: str, rows=rows) -> float | None:
            values = [r[key] for r in rows if r.get(key) is not None]
            return float(np.median(values)) if values else None

        completed = med("completed") or 1
        points.append(
            EnvelopePoint(
                concurrency=c,
                requests=int(med("requests") or 0),
                failed=int(med("failed") or 0),
                request_throughput=completed / (med("duration_s") or 1),
                output_throughput=med("output_throughput") or 0.0,
                prefill_tokens_per_s=0.0,
                input_tokens_mean=float(input_tokens),
                output_tokens_mean=(med("output_tokens") or 0) / completed,
                ttft_p50_ms=med("ttft_p50_ms"),
                ttft_p99_ms=med("ttft_p99_ms"),
                tpot_p50_ms=med("tpot_p50_ms"),
                tpot_p99_ms=med("tpot_p99_ms"),
                e2el_p50_ms=med("e2el_p50_ms"),
                e2el_p99_ms=None,
            )
        )
        points[-1].prefill_tokens_per_s = (
            points[-1].request_throughput * points[-1].input_tokens_mean
        )
    return Envelope(
        recipe=recipe.ref,
        measured=measured,
        source="derived from " + ", ".join(sorted({str(Path(f).parent) for f in files})),
        slo=slo,
        points=points,
        step_model=fit_step_model(points, limits_of(recipe)),
        max_concurrency_within_slo=None,
    )
