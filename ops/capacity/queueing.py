"""Queueing arithmetic of a pool: Erlang C for plain servers, and a small discrete-event model
of an LLM engine's continuous batching, calibrated from a measured envelope.

The engine model is vLLM V1's scheduler in outline: every step serves the running sequences
(one token each while decoding, a chunk of prompt while prefilling) and then admits waiting
requests first come, first served, while there is a free sequence slot (max_num_seqs) and
token budget (max_num_batched_tokens). A step takes
    base_s + per_seq_s x decoding sequences + per_prefill_token_s x prompt tokens computed,
and a request's first token comes at the end of the step that finishes its prompt; it
reaches the engine overhead_s after it arrived (the serving path). Prompt
tokens its prefix cache holds are not computed. Replicas are picked as Ray Serve's router
does: the less loaded of two chosen at random.
"""

from __future__ import annotations

import heapq
import math
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

# -- Erlang C (M/M/c) -------------------------------------------------------------------------


def erlang_c(servers: int, offered: float) -> float:
    """Probability that an arrival waits, M/M/c with `offered` = lambda / mu Erlangs."""
    if offered >= servers:
        return 1.0
    term, total = 1.0, 1.0  # a^k / k! for k = 0
    for k in range(1, servers):
        term *= offered / k
        total += term
    top = term * offered / servers / (1 - offered / servers)  # a^c / c! / (1 - rho)
    return top / (total + top)


def mmc_wait_quantile(rate: float, service_rate: float, servers: int, q: float) -> float:
    """The q-quantile of the wait in queue, M/M/c: P(W > t) = C e^{-(c mu - lambda) t}."""
    if rate >= servers * service_rate:
        return math.inf
    c = erlang_c(servers, rate / service_rate)
    if c <= 1 - q:
        return 0.0
    return math.log(c / (1 - q)) / (servers * service_rate - rate)


def mmc_mean_wait(rate: float, service_rate: float, servers: int) -> float:
    if rate >= servers * service_rate:
        return math.inf
    return erlang_c(servers, rate / service_rate) / (servers * service_rate - rate)


# -- continuous batching ----------------------------------------------------------------------


@dataclass(frozen=True)
class StepModel:
    base_s: float
    per_seq_s: float
    per_prefill_token_s: float
    overhead_s: float = 0.0  # the serving path before the engine (HTTP, Gateway, tokenizing)

    def step_s(self, decoding: int, prefill_tokens: int) -> float:
        return self.base_s + self.per_seq_s * decoding + self.per_prefill_token_s * prefill_tokens


@dataclass(frozen=True)
class EngineLimits:
    max_num_seqs: int
    max_num_batched_tokens: int


@dataclass
class SimRequest:
    profile: str
    arrival: float
    prompt_tokens: int
    output_tokens: int
    cached_tokens: int = 0
    client: int | None = None  # closed-loop client that sent it
    first_token: float | None = None
    finish: float | None = None
    _to_prefill: int = 0
    _generated: int = 0

    @property
    def ttft(self) -> float | None:
        return None if self.first_token is None else self.first_token - self.arrival

    @property
    def tpot(self) -> float | None:
        if self.finish is None or self.first_token is None or self.output_tokens <= 1:
            return None
        return (self.finish - self.first_token) / (self.output_tokens - 1)


@dataclass
class Replica:
    limits: EngineLimits
    step: StepModel
    waiting: deque = field(default_factory=deque)
    running: list = field(default_factory=list)
    busy_until: float | None = None
    stepping: list = field(default_factory=list)  # (request, prompt tokens in this step)
    busy_s: float = 0.0
    seq_seconds: float = 0.0  # integral of running sequences over time (working set)
    context_token_seconds: float = 0.0  # integral of their context tokens

    @property
    def load(self) -> int:
        return len(self.waiting) + len(self.running)

    def start_step(self, now: float) -> None:
        budget = self.limits.max_num_batched_tokens
        batch: list[tuple[SimRequest, int]] = []
        for r in self.running:
            take = min(r._to_prefill, budget) if r._to_prefill else 1
            if take <= 0:
                continue
            budget -= take
            batch.append((r, take if r._to_prefill else 0))
        while self.waiting and len(self.running) < self.limits.max_num_seqs and budget > 0:
            r = self.waiting.popleft()
            r._to_prefill = max(1, r.prompt_tokens - r.cached_tokens)
            take = min(r._to_prefill, budget)
            budget -= take
            self.running.append(r)
            batch.append((r, take))
        if not batch:
            self.busy_until = None
            return
        decoding = sum(1 for _, chunk in batch if chunk == 0)
        prefill = sum(chunk for _, chunk in batch)
        seconds = self.step.step_s(decoding, prefill)
        self.stepping = batch
        self.busy_until = now + seconds
        self.busy_s += seconds
        self.seq_seconds += len(self.running) * seconds
        self.context_token_seconds += seconds * sum(
            r.prompt_tokens + r._generated for r in self.running
        )

    def end_step(self, now: float) -> list[SimRequest]:
        done = []
        for r, chunk in self.stepping:
            if chunk:
                r._to_prefill -= chunk
                if r._to_prefill > 0:
                    continue
                r.first_token = now
            r._generated += 1
            if r._generated >= r.output_tokens:
                r.finish = now
                done.append(r)
        self.running = [r for r in self.running if r.finish is None]
        self.stepping = []
        return done


@dataclass
class ClosedLoop:
    """Clients that each keep one request in flight (a load generator's concurrency)."""

    profile: str
    clients: int
    make: Callable[[random.Random], tuple[int, int, int]]  # -> prompt, output, cached


@dataclass
class SimResult:
    requests: list[SimRequest]
    window: tuple[float, float]
    replicas: list[Replica]

    def measured(self, profile: str | None = None) -> list[SimRequest]:
        lo, hi = self.window
        return [
            r
            for r in self.requests
            if lo <= r.arrival < hi and (profile is None or r.profile == profile)
        ]


def simulate(
    step: StepModel,
    limits: EngineLimits,
    replicas: int,
    arrivals: list[tuple[float, str, int, int, int]],
    duration_s: float,
    closed: list[ClosedLoop] = (),
    warmup_s: float = 0.0,
    seed: int = 0,
) -> SimResult:
    """Run open-loop `arrivals` (time, profile, prompt, output, cached tokens) and closed-loop
    clients through `replicas` engines for `duration_s`; requests arriving after it are not
    sent, those in flight may run for half as long again (what is still unfinished then is a
    backlog: the pool cannot keep up)."""
    rng = random.Random(seed)
    pool = [Replica(limits, step) for _ in range(replicas)]
    events: list[tuple[float, int, int, object]] = []  # (time, order, kind, payload)
    order = 0

    def push(t: float, kind: int, payload: object) -> None:
        nonlocal order
        order += 1
        heapq.heappush(events, (t, order, kind, payload))

    delay = step.overhead_s
    for a in arrivals:
        if a[0] < duration_s:
            push(a[0] + delay, 0, SimRequest(a[1], a[0], a[2], a[3], a[4]))
    for loop in closed:
        for client in range(loop.clients):
            prompt, output, cached = loop.make(rng)
            t = client * 1e-3
            push(t + delay, 0, SimRequest(loop.profile, t, prompt, output, cached, client=client))
    by_profile = {loop.profile: loop for loop in closed}
    sent: list[SimRequest] = []
    horizon = duration_s * 1.5
    while events:
        now, _, kind, payload = heapq.heappop(events)
        if now > horizon:
            break
        if kind == 0:
            request: SimRequest = payload  # type: ignore[assignment]
            sent.append(request)
            if len(pool) == 1:
                replica = pool[0]
            else:
                a, b = rng.sample(pool, 2)
                replica = a if a.load <= b.load else b
            replica.waiting.append(request)
            if replica.busy_until is None:
                replica.start_step(now)
                push(replica.busy_until, 1, replica)
        else:
            replica: Replica = payload  # type: ignore[no-redef]
            for r in replica.end_step(now):
                loop = by_profile.get(r.profile)
                if loop is not None and r.client is not None and now < duration_s:
                    prompt, output, cached = loop.make(rng)
                    request = SimRequest(r.profile, now, prompt, output, cached, r.client)
                    push(now + delay, 0, request)
            replica.start_step(now)
            if replica.busy_until is not None:
                push(replica.busy_until, 1, replica)
    return SimResult(sent, (warmup_s, duration_s), pool)


def poisson_times(rate: float, duration_s: float, rng: random.Random) -> list[float]:
    times, t = [], 0.0
    while rate > 0:
        t += rng.expovariate(rate)
        if t >= duration_s:
            return times
        times.append(t)
    return times
