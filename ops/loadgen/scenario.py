"""Scenario files (YAML, validated): a mix of request profiles with their arrivals, lengths,
prefix reuse and SLOs."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import Field, model_validator

from recipes.engines import Strict

SCENARIOS_DIR = Path(__file__).with_name("scenarios")


class Lengths(Strict):
    """A length distribution in tokens (or items, for embed/rerank)."""

    dist: Literal["fixed", "uniform", "lognormal", "trace"] = "fixed"
    value: int = Field(128, ge=1, description="fixed")
    min: int = Field(1, ge=1, description="uniform: lowest; all: clamp")
    max: int = Field(4096, ge=1, description="uniform: highest; all: clamp")
    median: float = Field(128, gt=0, description="lognormal: median")
    sigma: float = Field(0.5, gt=0, description="lognormal: spread")
    trace: str | None = Field(None, description="trace: JSONL file of real requests")
    field: str = Field("input_tokens", description="trace: which field of each line")


class Arrival(Strict):
    """Open loop (poisson, gamma, ramp: requests arrive whatever the server does) or closed loop
    (concurrency: a fixed number in flight, the next sent when one finishes)."""

    type: Literal["poisson", "gamma", "constant", "ramp", "concurrency"] = "poisson"
    rate: float = Field(1.0, gt=0, description="requests/s (ramp: the final rate)")
    start_rate: float = Field(0.1, gt=0, description="ramp: the first rate")
    burstiness: float = Field(1.0, gt=0, description="gamma shape: <1 bursty, 1 = Poisson")
    concurrency: int = Field(1, ge=1, description="concurrency: requests in flight")


class PrefixReuse(Strict):
    shared_prefix_tokens: int = Field(0, ge=0, description="A system prompt every request shares")
    sessions: int = Field(0, ge=0, description="Multi-turn sessions (0 = none)")
    turns: int = Field(4, ge=1, description="Turns per session; each turn repeats the history")
    hit_rate: float = Field(
        1.0, ge=0, le=1, description="Share of requests that continue a session (vs a new one)"
    )


class SLO(Strict):
    ttft_ms: float | None = Field(None, gt=0)
    tpot_ms: float | None = Field(None, gt=0)
    e2e_ms: float | None = Field(None, gt=0)


class Profile(Strict):
    name: str
    kind: Literal["chat", "completion", "embed", "rerank", "stt"]
    model: str
    share: float | None = Field(None, gt=0, description="Share of the scenario's arrivals")
    arrival: Arrival | None = Field(None, description="Own arrivals (instead of a share)")
    input: Lengths = Field(default_factory=Lengths)
    output: Lengths = Field(default_factory=lambda: Lengths(value=128))
    items: Lengths = Field(
        default_factory=lambda: Lengths(value=1), description="embed: texts; rerank: documents"
    )
    prefix: PrefixReuse = Field(default_factory=PrefixReuse)
    stream: bool = True
    ignore_eos: bool = Field(True, description="Generate exactly the sampled output length")
    temperature: float | None = Field(
        0.0,
        ge=0,
        description="Sampling temperature sent; None sends none (the server's default, as "
        "`vllm bench serve` does since it stopped forcing greedy)",
    )
    vocabulary: Literal["english", "dummy-llama"] = Field(
        "english",
        description="Prompt words: English (about a token each with BPE tokenizers), or the "
        "dummy model's own words t3..t128255 (exactly one token each, random like vLLM's "
        "random dataset, so prefix caching sees no accidental reuse)",
    )
    headers: dict[str, str] = Field(default_factory=dict)
    slo: SLO = Field(default_factory=SLO)


class Scenario(Strict):
    name: str
    description: str = ""
    seed: int = 0
    arrival: Arrival | None = Field(None, description="Shared arrivals split by profile share")
    duration_s: float | None = Field(None, gt=0)
    requests: int | None = Field(None, ge=1)
    warmup_s: float = Field(0.0, ge=0, description="Excluded from the numbers")
    warmup_requests: int = Field(
        0,
        ge=0,
        description="Sent (round-robin over the profiles, 8 at a time) before the measured run "
        "and left out of it, like `vllm bench serve --num-warmups`: the first requests after an "
        "idle spell pay for cold paths (handles, thread pools, engine wake-up)",
    )
    cooldown_s: float = Field(0.0, ge=0, description="Excluded from the numbers")
    timeout_s: float = Field(600.0, gt=0, description="Per request")
    profiles: list[Profile] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> Scenario:
        if (self.duration_s is None) == (self.requests is None):
            raise ValueError("set exactly one of duration_s or requests")
        for p in self.profiles:
            if (p.arrival is None) == (p.share is None):
                raise ValueError(f"profile {p.name}: set exactly one of share or arrival")
            if p.share is not None and self.arrival is None:
                raise ValueError(f"profile {p.name} has a share but the scenario has no arrival")
        names = [p.name for p in self.profiles]
        if len(set(names)) != len(names):
            raise ValueError("profile names must be unique")
        return self


def load_scenario(name_or_path: str) -> Scenario:
    path = Path(name_or_path)
    if not path.exists():
        path = SCENARIOS_DIR / f"{name_or_path}.yaml"
    return Scenario.model_validate(yaml.safe_load(path.read_text()))
