"""The traffic shape of each (model, workload profile): arrival rates over time, prompt and
output token distributions, streaming share and prefix reuse; read from the Gateway's JSON
request log (app/observe.py), or made from a load scenario (ops/loadgen/scenarios)."""

from __future__ import annotations

import json
import random
from collections import defaultdict
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, Field

from ops.capacity.prefix import BlockCache, PrefixReuse
from ops.loadgen.scenario import SLO, Scenario

# Quantiles kept of a token distribution: enough to resample it for the planner's model.
QUANTILES = [round(q, 3) for q in np.linspace(0.005, 0.995, 100)]


class Distribution(BaseModel):
    count: int
    mean: float
    p50: float
    p90: float
    p99: float
    max: float
    quantiles: list[float] = Field(description="values at QUANTILES, for resampling")

    @classmethod
    def of(cls, values: Iterable[float]) -> Distribution | None:
        data = np.asarray(list(values), dtype=float)
        if not data.size:
            return None
        return cls(
            count=int(data.size),
            mean=float(data.mean()),
            p50=float(np.percentile(data, 50)),
            p90=float(np.percentile(data, 90)),
            p99=float(np.percentile(data, 99)),
            max=float(data.max()),
            quantiles=[float(v) for v in np.quantile(data, QUANTILES)],
        )

    def sample(self, rng: random.Random) -> int:
        return max(1, round(rng.choice(self.quantiles)))


class Rates(BaseModel):
    """Requests per second, per bucket of `bucket_s` seconds over the log's window."""

    bucket_s: float
    buckets: int
    mean: float
    p50: float
    p90: float
    p99: float
    peak: float
    series: list[float] = Field(description="rate of every bucket, in time order")


class PrefixShare(BaseModel):
    share: float = Field(description="share of prompt tokens a prefix cache could serve")
    prompt_tokens: int
    cached_tokens: int
    source: Literal["engine-counters", "block-hashes"]
    block_size: int | None = None


class ProfileShape(BaseModel):
    model: str
    profile: str
    kind: str = Field(description="endpoint or scenario kind: chat, completion, embed, ...")
    pools: list[str] = Field(default_factory=list, description="pools that served it (logs)")
    requests: int
    ok_share: float
    rejected_429_share: float = 0.0
    window_s: float
    arrival: Literal["open", "closed"] = "open"
    concurrency: int | None = Field(None, description="closed loop: requests kept in flight")
    rate: Rates | None = None
    prompt_tokens: Distribution | None = None
    output_tokens: Distribution | None = None
    stream_share: float
    prefix: PrefixShare | None = None
    slo: SLO | None = Field(None, description="the scenario's SLO of this profile")

    @property
    def peak_rate(self) -> float:
        return self.rate.peak if self.rate else 0.0


class TrafficShape(BaseModel):
    source: str
    created: str
    bucket_s: float
    profiles: list[ProfileShape]

    def profile(self, name: str) -> ProfileShape:
        return next(p for p in self.profiles if p.profile == name)


def load_shape(path: Path) -> TrafficShape:
    return TrafficShape.model_validate_json(Path(path).read_text())


# -- from the Gateway's request log -----------------------------------------------------------

# Endpoints of work a pool does (not /health, /metrics, /v1/models).
WORK = {
    "/v1/chat/completions": "chat",
    "/v1/completions": "completion",
    "/v1/embeddings": "embed",
    "/v1/rerank": "rerank",
    "/rerank": "rerank",
    "/v2/rerank": "rerank",
    "/v1/audio/transcriptions": "stt",
}


def log_files(paths: Iterable[Path]) -> Iterator[Path]:
    """Files named, and the Gateway replica logs under folders named (Ray's logs/serve/)."""
    for path in paths:
        if path.is_dir():
            yield from sorted(path.rglob("replica_*Gateway*.log"))
        else:
            yield path


def read_requests(paths: Iterable[Path]) -> list[dict]:
    """The Gateway's `request` lines of work endpoints that reached a pool."""
    rows = []
    for path in log_files(paths):
        with open(path, errors="replace") as f:
            for line in f:
                if '"event": "request"' not in line and '"event":"request"' not in line:
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if (
                    row.get("event") == "request"
                    and row.get("endpoint") in WORK
                    and row.get("pool", "none") != "none"
                    and row.get("arrival") is not None
                ):
                    rows.append(row)
    return rows


def rates(arrivals: list[float], bucket_s: float, start: float, end: float) -> Rates:
    buckets = max(1, int(np.ceil((end - start) / bucket_s)))
    counts = np.zeros(buckets)
    for t in arrivals:
        counts[min(buckets - 1, int((t - start) // bucket_s))] += 1
    # the last bucket may be partial: its rate is over the time it covers
    widths = np.full(buckets, bucket_s)
    widths[-1] = max(1e-9, (end - start) - bucket_s * (buckets - 1)) if end > start else bucket_s
    series = counts / widths
    return Rates(
        bucket_s=bucket_s,
        buckets=buckets,
        mean=float(len(arrivals) / max(end - start, 1e-9)),
        p50=float(np.percentile(series, 50)),
        p90=float(np.percentile(series, 90)),
        p99=float(np.percentile(series, 99)),
        peak=float(series.max()),
        series=[round(float(x), 4) for x in series],
    )


def shape_from_log(rows: list[dict], bucket_s: float, source: str, created: str) -> TrafficShape:
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for row in rows:
        profile = row.get("workload_profile") or row.get("profile") or "unknown"
        groups[(row.get("model", "?"), profile)].append(row)
    start = min((r["arrival"] for r in rows), default=0.0)
    end = max((r["arrival"] for r in rows), default=0.0)
    profiles = []
    for (model, profile), mine in sorted(groups.items()):
        ok = [r for r in mine if 200 <= int(r.get("status", 0)) < 300]
        counted = [r for r in ok if r.get("prompt_tokens") is not None]
        prefix = None
        cached_rows = [r for r in counted if r.get("cached_tokens") is not None]
        if cached_rows and WORK[mine[0]["endpoint"]] in ("chat", "completion"):
            prompt = sum(r["prompt_tokens"] for r in cached_rows)
            cached = sum(r["cached_tokens"] for r in cached_rows)
            prefix = PrefixShare(
                share=cached / prompt if prompt else 0.0,
                prompt_tokens=prompt,
                cached_tokens=cached,
                source="engine-counters",
            )
        generated = [r["completion_tokens"] for r in counted if r.get("completion_tokens")]
        profiles.append(
            ProfileShape(
                model=model,
                profile=profile,
                kind=WORK[mine[0]["endpoint"]],
                pools=sorted({r["pool"] for r in mine}),
                requests=len(mine),
                ok_share=len(ok) / len(mine),
                rejected_429_share=sum(int(r.get("status", 0)) == 429 for r in mine) / len(mine),
                window_s=end - start,
                rate=rates([r["arrival"] for r in mine], bucket_s, start, end),
                prompt_tokens=Distribution.of(r["prompt_tokens"] for r in counted),
                output_tokens=Distribution.of(generated),
                # of answered requests: an error answer is JSON whatever was asked
                stream_share=sum(bool(r.get("stream")) for r in ok) / len(ok) if ok else 0.0,
                prefix=prefix,
            )
        )
    return TrafficShape(source=source, created=created, bucket_s=bucket_s, profiles=profiles)


# -- from a load scenario ---------------------------------------------------------------------


def prompt_token_ids(body: dict, tokenizer=None) -> list[int]:
    """The prompt's tokens: the tokenizer's ids when given (chat template applied), otherwise
    one id per word (the scenarios' English words are about one token each)."""
    if tokenizer is not None:
        if "messages" in body:
            text = tokenizer.apply_chat_template(
                body["messages"], tokenize=False, add_generation_prompt=True
            )
            return list(tokenizer.encode(text, add_special_tokens=False))
        return list(tokenizer.encode(body.get("prompt", "")))
    if "messages" in body:
        text = " ".join(f"<{m['role']}> {m['content']}" for m in body["messages"])
    else:
        text = body.get("prompt", "")
    return [_word_id(w) for w in text.split()]


def _word_id(word: str) -> int:
    import zlib

    return zlib.crc32(word.encode())


def shape_from_scenario(
    scenario: Scenario,
    samples: int,
    block_size: int,
    created: str,
    tokenizer=None,
    bucket_s: float = 60.0,
) -> TrafficShape:
    """The scenario's shape: its arrival processes as rates (closed loops as concurrency), and
    token distributions and prefix reuse from `samples` requests built as ops.loadgen builds
    them (its seeds), the prompts' blocks hashed."""
    from ops.loadgen.requests import RequestFactory
    from ops.loadgen.runner import plan

    schedule = plan(scenario)
    duration = scenario.duration_s or (max((t for t, _ in schedule.open_loop), default=0.0) or 1.0)
    profiles = []
    for i, p in enumerate(scenario.profiles):
        factory = RequestFactory(p, scenario.seed + i)
        cache, reuse = BlockCache(block_size), PrefixReuse()
        prompts, outputs = [], []
        for _ in range(samples):
            _, body, in_tokens, out_tokens = factory.build()
            if p.kind in ("chat", "completion"):
                tokens = prompt_token_ids(body, tokenizer)
                reuse.prompt_tokens += len(tokens)
                reuse.cached_tokens += cache.admit(tokens)
                prompts.append(len(tokens))
                outputs.append(out_tokens)
            else:
                prompts.append(in_tokens)
        closed = p.arrival is not None and p.arrival.type == "concurrency"
        times = [t for t, q in schedule.open_loop if q.name == p.name]
        profiles.append(
            ProfileShape(
                model=p.model,
                profile=p.name,
                kind=p.kind,
                requests=len(times) if not closed else 0,
                ok_share=1.0,
                window_s=duration,
                arrival="closed" if closed else "open",
                concurrency=p.arrival.concurrency if closed else None,  # type: ignore[union-attr]
                rate=None if closed else rates(times, bucket_s, 0.0, duration),
                prompt_tokens=Distribution.of(prompts),
                output_tokens=Distribution.of(outputs),
                stream_share=1.0 if p.stream else 0.0,
                prefix=PrefixShare(
                    share=reuse.share,
                    prompt_tokens=reuse.prompt_tokens,
                    cached_tokens=reuse.cached_tokens,
                    source="block-hashes",
                    block_size=block_size,
                )
                if reuse.prompt_tokens
                else None,
                slo=p.slo,
            )
        )
    return TrafficShape(
        source=f"scenario {scenario.name}", created=created, bucket_s=bucket_s, profiles=profiles
    )
