"""The plan: per pool of a recipe set, the replicas (and GPUs) that hold each profile's SLO at
the shape's peak, predicted with the engine model calibrated from the pool's envelope; the
prefill load against the engine's prefill capacity; the KV-cache working set against the
cache the recipe gets; cost per hour and per accepted outcome. A pool that serves several
profiles is checked at its recipe's replica count: enough throughput for all but a missed p99
for a latency-critical profile is flagged, and dedicated pools are planned beside it."""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, Field

from ops.capacity.envelope import Envelope, limits_of
from ops.capacity.queueing import ClosedLoop, EngineLimits, SimResult, poisson_times, simulate
from ops.capacity.shape import ProfileShape, TrafficShape
from ops.loadgen.scenario import SLO
from ops.recipes.validate import gpus_per_replica
from ops.recipes.vram import GIB, estimate
from recipes.schema import Recipe

LATENCY_CRITICAL = ("ttft_critical", "fast_chat")


class ProfilePrediction(BaseModel):
    profile: str
    rate: float = Field(description="requests/s sent (closed loop: served) in the window")
    concurrency: int | None
    slo: SLO
    requests: int
    ttft_p50_ms: float | None
    ttft_p99_ms: float | None
    tpot_p50_ms: float | None
    tpot_p99_ms: float | None
    meets_slo: bool
    goodput_share: float = Field(description="share of requests within every SLO")


class Prediction(BaseModel):
    replicas: int
    load_factor: float
    profiles: list[ProfilePrediction]
    busy_share: float = Field(description="engine busy time / window, mean over replicas")
    mean_running: float = Field(description="sequences in the running batch, per replica, mean")
    max_running: int
    mean_context_tokens: float
    backlog: int = Field(0, description="requests sent in the window that never finished")
    meets_slo: bool


class PoolPlan(BaseModel):
    pool: str
    recipe: str
    profiles: list[str]
    envelope: str | None
    replicas_now: int
    replicas_needed: int | None
    gpus_needed: float | None
    cpus_needed: float | None
    headroom: dict[str, float] = Field(
        default_factory=dict, description="SLO / predicted p99 per bounded metric, at the plan"
    )
    rate_headroom: float | None = Field(None, description="load multiple the plan still holds")
    prefill_tokens_per_s: float | None = None
    prefill_capacity_tokens_per_s: float | None = None
    prefill_share: float | None = None
    kv_working_set_tokens: float | None = Field(None, description="per replica (engine)")
    kv_working_set_gib: float | None = None
    kv_worst_case_gib: float | None = None
    kv_budget_tokens: int | None = None
    kv_budget_gib: float | None = None
    usd_per_hour: float | None = None
    usd_per_accepted: float | None = None
    at_plan: Prediction | None = None
    at_current: Prediction | None = None
    curve: list[Prediction] = Field(default_factory=list)
    shared_pool_flag: str | None = None
    dedicated: list[PoolPlan] = Field(default_factory=list)
    note: str = ""


PoolPlan.model_rebuild()


@dataclass
class Options:
    duration_s: float = 240.0
    warmup_s: float = 20.0
    max_replicas: int = 16
    seed: int = 0
    curve: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0)


def slo_of(p: ProfileShape, recipe: Recipe) -> SLO:
    """The scenario's SLO of the profile, else the pool's (batch traffic has none)."""
    if p.slo is not None and (p.slo.ttft_ms or p.slo.tpot_ms or p.slo.e2e_ms):
        return p.slo
    if p.profile == "batch":
        return SLO()
    return SLO(ttft_ms=recipe.slo.ttft_p99_ms, tpot_ms=recipe.slo.tpot_p99_ms)


def routed(shape: TrafficShape, recipe: Recipe, recipes: list[Recipe]) -> list[ProfileShape]:
    """The shape's profiles this pool serves: a profile the logs saw on it, or one of its
    model names whose profile it serves (the model's default pool takes the rest)."""
    names = {recipe.model.name, *recipe.aliases}
    mine = []
    for p in shape.profiles:
        if p.kind not in ("chat", "completion"):
            continue
        if p.pools:
            if recipe.id in p.pools:
                mine.append(p)
            continue
        if p.model not in names:
            continue
        same_model = [r for r in recipes if p.model in {r.model.name, *r.aliases}]
        serving = [r for r in same_model if p.profile in r.profiles]
        owner = serving[0] if serving else next((r for r in same_model if r.default_pool), None)
        if owner is not None and owner.id == recipe.id:
            mine.append(p)
    return mine


def predict(
    env: Envelope,
    limits: EngineLimits,
    profiles: list[ProfileShape],
    slos: dict[str, SLO],
    replicas: int,
    factor: float,
    opts: Options,
) -> Prediction:
    rng = random.Random(opts.seed)
    arrivals, closed = [], []
    for p in profiles:
        share = p.prefix.share if p.prefix else 0.0

        def make(r: random.Random, p=p, share=share) -> tuple[int, int, int]:
            prompt = p.prompt_tokens.sample(r) if p.prompt_tokens else 128
            output = p.output_tokens.sample(r) if p.output_tokens else 128
            return prompt, output, int(prompt * share)

        if p.arrival == "closed":
            closed.append(ClosedLoop(p.profile, max(1, round((p.concurrency or 1) * factor)), make))
            continue
        for t in poisson_times(p.peak_rate * factor, opts.duration_s, rng):
            arrivals.append((t, p.profile, *make(rng)))
    arrivals.sort()
    result = simulate(
        env.model(),
        limits,
        replicas,
        arrivals,
        opts.duration_s,
        closed,
        warmup_s=opts.warmup_s,
        seed=opts.seed,
    )
    return summarize(result, profiles, slos, replicas, factor, opts)


def _p(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) * 1000 if values else None


def summarize(
    result: SimResult,
    profiles: list[ProfileShape],
    slos: dict[str, SLO],
    replicas: int,
    factor: float,
    opts: Options,
) -> Prediction:
    out = []
    for p in profiles:
        mine = result.measured(p.profile)
        done = [r for r in mine if r.finish is not None]
        ttft = [r.ttft for r in done if r.ttft is not None]
        tpot = [r.tpot for r in done if r.tpot is not None]
        slo = slos[p.profile]
        unfinished = len(mine) - len(done)
        measured_s = result.window[1] - result.window[0]
        pred = ProfilePrediction(
            profile=p.profile,
            rate=len(mine) / measured_s if measured_s else 0.0,
            concurrency=None if p.arrival != "closed" else round((p.concurrency or 1) * factor),
            slo=slo,
            requests=len(mine),
            ttft_p50_ms=_p(ttft, 50),
            ttft_p99_ms=_p(ttft, 99),
            tpot_p50_ms=_p(tpot, 50),
            tpot_p99_ms=_p(tpot, 99),
            meets_slo=False,
            goodput_share=0.0,
        )
        good = sum(
            (slo.ttft_ms is None or (r.ttft or 0) * 1000 <= slo.ttft_ms)
            and (slo.tpot_ms is None or r.tpot is None or r.tpot * 1000 <= slo.tpot_ms)
            for r in done
        )
        pred.goodput_share = good / len(mine) if mine else 1.0
        pred.meets_slo = unfinished == 0 and all(
            limit is None or value is None or value <= limit
            for limit, value in ((slo.ttft_ms, pred.ttft_p99_ms), (slo.tpot_ms, pred.tpot_p99_ms))
        )
        out.append(pred)
    window = opts.duration_s
    reps = result.replicas
    seq_s = sum(r.seq_seconds for r in reps)
    return Prediction(
        replicas=replicas,
        load_factor=factor,
        profiles=out,
        busy_share=float(np.mean([min(1.0, r.busy_s / window) for r in reps])),
        mean_running=seq_s / window / len(reps),
        max_running=max(len(r.running) for r in reps) if reps else 0,
        mean_context_tokens=sum(r.context_token_seconds for r in reps) / seq_s if seq_s else 0.0,
        backlog=sum(1 for r in result.measured() if r.finish is None),
        meets_slo=all(p.meets_slo for p in out),
    )


def replicas_for(
    env: Envelope,
    limits: EngineLimits,
    profiles: list[ProfileShape],
    slos: dict[str, SLO],
    factor: float,
    opts: Options,
) -> tuple[int | None, Prediction | None]:
    last = None
    for n in range(1, opts.max_replicas + 1):
        last = predict(env, limits, profiles, slos, n, factor, opts)
        if last.meets_slo:
            return n, last
    return None, last


def plan_pool(
    recipe: Recipe,
    profiles: list[ProfileShape],
    env: Envelope | None,
    envelope_path: str | None,
    opts: Options,
    dedicated_check: bool = True,
) -> PoolPlan:
    now = recipe.deployment.autoscaling.max_replicas
    plan = PoolPlan(
        pool=recipe.id,
        recipe=recipe.ref,
        profiles=[p.profile for p in profiles],
        envelope=envelope_path,
        replicas_now=now,
        replicas_needed=None,
        gpus_needed=None,
        cpus_needed=None,
    )
    if env is None:
        plan.note = "no envelope: run `python -m ops.capacity calibrate` on this pool"
        return plan
    limits = limits_of(recipe)
    slos = {p.profile: slo_of(p, recipe) for p in profiles}
    needed, at_plan = replicas_for(env, limits, profiles, slos, 1.0, opts)
    plan.replicas_needed, plan.at_plan = needed, at_plan
    per_gpu = gpus_per_replica(recipe)
    if needed is not None and at_plan is not None:
        plan.gpus_needed = needed * per_gpu
        plan.cpus_needed = needed * recipe.deployment.num_cpus
        for p in at_plan.profiles:
            for limit, value, name in (
                (p.slo.ttft_ms, p.ttft_p99_ms, "ttft_p99"),
                (p.slo.tpot_ms, p.tpot_p99_ms, "tpot_p99"),
            ):
                if limit and value:
                    plan.headroom[f"{p.profile}.{name}"] = round(limit / value, 3)
        plan.rate_headroom = _rate_headroom(env, limits, profiles, slos, needed, opts)
        _resources(plan, recipe, env, profiles, at_plan, needed)
    plan.at_current = predict(env, limits, profiles, slos, now, 1.0, opts)
    if needed is None:
        plan.note = (
            f"no replica count up to {opts.max_replicas} holds every SLO; prefill, KV and cost "
            f"are at the recipe's {now} replica(s)"
        )
        _resources(plan, recipe, env, profiles, plan.at_current, now)
    curve = [replicas_for(env, limits, profiles, slos, f, opts)[1] for f in opts.curve]
    plan.curve = [c for c in curve if c is not None]
    if dedicated_check and len(profiles) > 1:
        _shared_check(plan, recipe, profiles, env, envelope_path, opts)
    return plan


def _rate_headroom(env, limits, profiles, slos, replicas, opts) -> float | None:
    """The largest load multiple (1 to 4) at which `replicas` still hold every SLO (bisection)."""
    lo, hi = 1.0, 4.0
    if predict(env, limits, profiles, slos, replicas, hi, opts).meets_slo:
        return hi
    for _ in range(5):
        mid = (lo + hi) / 2
        if predict(env, limits, profiles, slos, replicas, mid, opts).meets_slo:
            lo = mid
        else:
            hi = mid
    return round(lo, 3)


def working_set_tokens(sequences: float, context_tokens: float, shared_prefix: float) -> float:
    """KV tokens the cache must hold: each sequence's context, the prefix they share held once."""
    return max(0.0, sequences * context_tokens - max(0.0, sequences - 1) * shared_prefix)


def _resources(plan: PoolPlan, recipe: Recipe, env: Envelope, profiles, at: Prediction, n: int):
    step = env.model()
    demand = 0.0
    total_rate = 0.0
    for p, pred in zip(profiles, at.profiles, strict=True):
        share = p.prefix.share if p.prefix else 0.0
        prompt = p.prompt_tokens.mean if p.prompt_tokens else 0.0
        total_rate += pred.rate
        demand += pred.rate * prompt * (1 - share)
    plan.prefill_tokens_per_s = demand
    if step.per_prefill_token_s:
        plan.prefill_capacity_tokens_per_s = n / step.per_prefill_token_s
        plan.prefill_share = demand / plan.prefill_capacity_tokens_per_s
    # Working set: sequences in the batch x their context, the shared prefix held once.
    prefix = max(
        ((p.prefix.share if p.prefix else 0.0) * (p.prompt_tokens.mean if p.prompt_tokens else 0))
        for p in profiles
    )
    plan.kv_working_set_tokens = working_set_tokens(at.mean_running, at.mean_context_tokens, prefix)
    est = estimate(recipe)
    if est is not None:
        plan.kv_working_set_gib = plan.kv_working_set_tokens * est.kv_bytes_per_token / GIB
        plan.kv_worst_case_gib = est.kv_worst_case_gib
        budget = est.kv_budget_tokens()
        engine = recipe.engine
        if budget is None and getattr(engine, "cpu_kvcache_space_gib", None):
            budget = int(engine.cpu_kvcache_space_gib * GIB / est.kv_bytes_per_token)
        plan.kv_budget_tokens = budget
        if budget is not None:
            plan.kv_budget_gib = budget * est.kv_bytes_per_token / GIB
    plan.usd_per_hour = n * recipe.cost.usd_per_hour
    ok_share = float(np.mean([p.ok_share for p in profiles])) if profiles else 1.0
    good = float(np.mean([p.goodput_share for p in at.profiles])) if at.profiles else 1.0
    accepted_per_hour = total_rate * 3600 * ok_share * good
    plan.usd_per_accepted = plan.usd_per_hour / accepted_per_hour if accepted_per_hour else None


def _shared_check(plan: PoolPlan, recipe: Recipe, profiles, env, envelope_path, opts) -> None:
    """At the recipe's replicas: is the throughput enough (every request sent in the window
    finished: no backlog) while a latency-critical profile misses its p99? Then plan one
    dedicated pool per profile (same recipe, one profile each) beside it."""
    now = plan.at_current
    if now is None:
        return
    critical = [
        p for p in now.profiles if p.slo.ttft_ms is not None and p.profile in LATENCY_CRITICAL
    ]
    missed = [p for p in critical if not p.meets_slo]
    if not missed:
        return
    if now.backlog == 0:
        names = ", ".join(
            f"{p.profile} TTFT p99 {p.ttft_p99_ms:.0f} ms > SLO {p.slo.ttft_ms:g} ms"
            for p in missed
        )
        plan.shared_pool_flag = (
            f"shared pool at {now.replicas} replica(s): the throughput is enough (every "
            f"request served, no backlog) but {names}"
        )
    for p in profiles:
        plan.dedicated.append(plan_pool(recipe, [p], env, envelope_path, opts, False))
