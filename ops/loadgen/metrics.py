"""Benchmark metrics with `vllm bench serve`'s definitions.

TTFT: send to the first chunk that carries a choice (a generated token, even one whose text is
empty, e.g. a partial UTF-8 byte or a special token). TPOT = (E2EL - TTFT) / (output tokens - 1),
only for requests with more than one output token. ITL: every gap between consecutive token
chunks, pooled over requests. E2EL: send to the last token chunk (the trailing usage chunk and
[DONE] carry no token), or to the whole body for unary calls. Throughputs are over the measured
window. Goodput: requests meeting every SLO of their profile, per second. Failed requests (any
non-200) count in error rates, never in latencies.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

PERCENTILES = (50, 90, 99)


@dataclass
class RequestRecord:
    profile: str
    send: float
    end: float
    status: int
    chunks: list[float] = field(default_factory=list)
    """Arrival time of every chunk that carried a token (stream) or of the body (unary)."""
    input_tokens: int = 0
    output_tokens: int = 0
    usage_reported: bool = False
    """The server's usage gave output_tokens (else the runner assumed the requested count)."""
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == 200

    @property
    def ttft(self) -> float | None:
        return self.chunks[0] - self.send if self.chunks else None

    @property
    def e2el(self) -> float:
        return (self.chunks[-1] if self.chunks else self.end) - self.send

    @property
    def tpot(self) -> float | None:
        if self.output_tokens <= 1 or self.ttft is None:
            return None
        return (self.e2el - self.ttft) / (self.output_tokens - 1)

    @property
    def itls(self) -> list[float]:
        return [b - a for a, b in itertools.pairwise(self.chunks)]


def percentiles(values: Iterable[float]) -> dict[str, float | None]:
    data = np.asarray(list(values), dtype=float)
    out: dict[str, float | None] = {"mean": float(data.mean()) if data.size else None}
    for p in PERCENTILES:
        out[f"p{p}"] = float(np.percentile(data, p)) if data.size else None
    return out


def meets_slo(record: RequestRecord, slo) -> bool:
    """Every SLO of the profile met (a one-token answer has no TPOT and passes that one)."""
    if not record.ok:
        return False
    if slo.ttft_ms is not None and (record.ttft is None or record.ttft * 1000 > slo.ttft_ms):
        return False
    if slo.tpot_ms is not None and record.tpot is not None and record.tpot * 1000 > slo.tpot_ms:
        return False
    return slo.e2e_ms is None or record.e2el * 1000 <= slo.e2e_ms


def summarize(records: list[RequestRecord], duration_s: float, slo=None) -> dict:
    """One profile's (or the whole run's) numbers over a window of `duration_s` seconds."""
    ok = [r for r in records if r.ok]
    total = len(records)
    output_tokens = sum(r.output_tokens for r in ok)
    input_tokens = sum(r.input_tokens for r in ok)
    out = {
        "requests": total,
        "completed": len(ok),
        "failed": total - len(ok),
        "error_rate": (total - len(ok)) / total if total else 0.0,
        "rejected_429_rate": sum(r.status == 429 for r in records) / total if total else 0.0,
        "duration_s": duration_s,
        "request_throughput": len(ok) / duration_s if duration_s else 0.0,
        "output_throughput": output_tokens / duration_s if duration_s else 0.0,
        "total_token_throughput": (input_tokens + output_tokens) / duration_s
        if duration_s
        else 0.0,
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "ttft_s": percentiles(r.ttft for r in ok if r.ttft is not None),
        "tpot_s": percentiles(r.tpot for r in ok if r.tpot is not None),
        "itl_s": percentiles(gap for r in ok for gap in r.itls),
        "e2el_s": percentiles(r.e2el for r in ok),
    }
    if slo is not None:
        good = sum(meets_slo(r, slo) for r in records)
        out["goodput"] = good / duration_s if duration_s else 0.0
        out["slo_attainment"] = good / total if total else 0.0
    return out


def measured(records: list[RequestRecord], start: float, end: float) -> list[RequestRecord]:
    """Records sent inside [start, end): warm-up before and cool-down after are left out."""
    return [r for r in records if start <= r.send < end]
