"""Cost per accepted outcome, per model and pool, from the platform's Prometheus metrics.

    python -m ops.cost_report [--metrics-url http://127.0.0.1:8000/metrics] [--window 3600]

Cost is every replica's recipe rate over time (platform_cost_usd_total: busy time attributed to
requests plus idle time), so it is what the pool really cost; accepted outcomes come from
POST /v1/feedback (platform_outcomes_total{accepted="true"}). With --window the report scrapes
twice, that many seconds apart, and reports the difference; without it, totals since the
replicas started. --prometheus points at a Prometheus server instead (increase() over the window).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass

import httpx

SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})? (\S+)$")
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')
Key = tuple[str, str]  # (model, pool)


@dataclass
class PoolCost:
    busy_usd: float = 0.0
    idle_usd: float = 0.0
    accepted: float = 0.0
    rejected: float = 0.0
    requests: float = 0.0

    @property
    def total_usd(self) -> float:
        return self.busy_usd + self.idle_usd

    @property
    def per_accepted(self) -> float | None:
        return self.total_usd / self.accepted if self.accepted else None


def samples(text: str) -> Iterator[tuple[str, dict[str, str], float]]:
    """(metric name, labels, value) of each sample line of a Prometheus text exposition."""
    for line in text.splitlines():
        match = SAMPLE.match(line)
        if match:
            name, labels, value = match.groups()
            yield name, dict(LABEL.findall(labels or "")), float(value)


def parse(text: str) -> dict[Key, PoolCost]:
    pools: dict[Key, PoolCost] = defaultdict(PoolCost)
    for name, ls, v in samples(text):
        key = (ls.get("model", "?"), ls.get("pool", "?"))
        if name == "ray_platform_cost_usd_total":
            if ls.get("kind") == "idle":
                pools[key].idle_usd += v
            else:
                pools[key].busy_usd += v
        elif name == "ray_platform_outcomes_total":
            if ls.get("accepted") == "true":
                pools[key].accepted += v
            else:
                pools[key].rejected += v
        elif name == "ray_platform_requests_total" and ls.get("status", "").startswith("2"):
            pools[key].requests += v
    return {k: v for k, v in pools.items() if k[0] not in ("none", "unknown")}


@dataclass
class TenantUse:
    requests: float = 0.0
    units: dict[str, float] | None = None


TenantKey = tuple[str, str, str]  # (tenant, model, pool)


def parse_tenants(text: str) -> dict[TenantKey, TenantUse]:
    """Answered requests and usage (tokens, texts, documents, audio seconds) by tenant."""
    out: dict[TenantKey, TenantUse] = defaultdict(TenantUse)
    for name, ls, value in samples(text):
        key = (ls.get("tenant", "?"), ls.get("model", "?"), ls.get("pool", "?"))
        if key[1] in ("none", "unknown"):
            continue
        if name == "ray_platform_tenant_requests_total" and ls.get("status", "").startswith("2"):
            out[key].requests += value
        elif name == "ray_platform_tenant_usage_total":
            units = out[key].units = out[key].units or {}
            units[ls.get("unit", "?")] = units.get(ls.get("unit", "?"), 0.0) + value
    return dict(out)


def tenant_table(tenants: dict[TenantKey, TenantUse], pools: dict[Key, PoolCost]) -> str:
    """Each tenant's share of a pool's cost is its share of the pool's answered requests."""
    lines = [
        "| tenant | model | pool | requests | usage | cost share USD |",
        "|---|---|---|---|---|---|",
    ]
    for (tenant, model, pool), use in sorted(tenants.items()):
        cost = pools.get((model, pool))
        share = (
            f"{cost.total_usd * use.requests / cost.requests:.6f}"
            if cost is not None and cost.requests
            else "n/a"
        )
        usage = ", ".join(f"{v:g} {u}" for u, v in sorted((use.units or {}).items())) or "-"
        lines.append(f"| {tenant} | {model} | {pool} | {use.requests:.0f} | {usage} | {share} |")
    return "\n".join(lines)


def difference(after: dict[Key, PoolCost], before: dict[Key, PoolCost]) -> dict[Key, PoolCost]:
    out = {}
    for key, a in after.items():
        b = before.get(key, PoolCost())
        out[key] = PoolCost(
            busy_usd=a.busy_usd - b.busy_usd,
            idle_usd=a.idle_usd - b.idle_usd,
            accepted=a.accepted - b.accepted,
            rejected=a.rejected - b.rejected,
            requests=a.requests - b.requests,
        )
    return out


def from_prometheus(url: str, window_s: float) -> dict[Key, PoolCost]:
    """The same numbers from a Prometheus server: increase() of each counter over the window."""
    selectors = {
        "busy": 'ray_platform_cost_usd_total{kind="busy"}',
        "idle": 'ray_platform_cost_usd_total{kind="idle"}',
        "accepted": 'ray_platform_outcomes_total{accepted="true"}',
        "rejected": 'ray_platform_outcomes_total{accepted="false"}',
        "requests": 'ray_platform_requests_total{status=~"2.."}',
    }
    queries = {k: f"sum by (model,pool) (increase({v}[%ds]))" for k, v in selectors.items()}
    pools: dict[Key, PoolCost] = defaultdict(PoolCost)
    for field, query in queries.items():
        r = httpx.get(f"{url}/api/v1/query", params={"query": query % int(window_s)}, timeout=30)
        r.raise_for_status()
        for item in r.json()["data"]["result"]:
            key = (item["metric"].get("model", "?"), item["metric"].get("pool", "?"))
            attr = {"busy": "busy_usd", "idle": "idle_usd"}.get(field, field)
            setattr(pools[key], attr, float(item["value"][1]))
    return dict(pools)


def table(pools: dict[Key, PoolCost]) -> str:
    head = (
        "| model | pool | requests | accepted | cost USD (busy + idle) | USD / accepted outcome |"
    )
    lines = [head, "|---|---|---|---|---|---|"]
    for (model, pool), c in sorted(pools.items()):
        per = f"{c.per_accepted:.6f}" if c.per_accepted is not None else "n/a (no accepted)"
        lines.append(
            f"| {model} | {pool} | {c.requests:.0f} | {c.accepted:.0f} | "
            f"{c.total_usd:.6f} ({c.busy_usd:.6f} + {c.idle_usd:.6f}) | {per} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--metrics-url", default="http://127.0.0.1:8000/metrics")
    parser.add_argument("--prometheus", default=None, help="a Prometheus server's base URL")
    parser.add_argument("--window", type=float, default=0, help="seconds; 0 = since start")
    parser.add_argument(
        "--api-key",
        default=os.environ.get("PLATFORM_API_KEY"),
        help="a key with the metrics scope (default $PLATFORM_API_KEY); none for an open Gateway",
    )
    args = parser.parse_args(argv)
    if args.prometheus:
        pools = from_prometheus(args.prometheus, args.window or 3600)
        print(table(pools))
        return 0
    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}

    def scrape() -> str:
        response = httpx.get(args.metrics_url, headers=headers, timeout=30)
        response.raise_for_status()
        return response.text

    first = scrape() if args.window else ""
    if args.window:
        time.sleep(args.window)
    last = scrape()
    pools = difference(parse(last), parse(first))
    print(table(pools))
    tenants = parse_tenants(last)
    if not args.window and tenants:  # by tenant: totals since start (counters of one scrape)
        print()
        print(tenant_table(tenants, pools))
    return 0


if __name__ == "__main__":
    sys.exit(main())
