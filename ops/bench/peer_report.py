"""Pure parts of the peer benchmark: per-round statistics, the summary over rounds, ratios to the
faster peer, the markdown table and the plot. No servers, no HTTP."""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

# Dedicated embedding servers the app is compared with ("ratio to the faster peer").
PEERS = ("infinity", "vllm-pooling")


def latency_ms(latencies_s: Sequence[float]) -> dict[str, float | None]:
    """p50/p99/mean of request latencies in milliseconds (numpy's linear percentiles)."""
    if not latencies_s:
        return {"p50_ms": None, "p99_ms": None, "mean_ms": None}
    data = np.asarray(latencies_s, dtype=float) * 1000.0
    return {
        "p50_ms": float(np.percentile(data, 50)),
        "p99_ms": float(np.percentile(data, 99)),
        "mean_ms": float(data.mean()),
    }


def round_record(
    completed_requests: int,
    texts_per_request: int,
    elapsed_s: float,
    latencies_s: Sequence[float],
    errors: int = 0,
) -> dict[str, Any]:
    """Throughput and latency of one measured window."""
    if elapsed_s <= 0:
        raise ValueError("elapsed_s must be positive")
    return {
        "requests": completed_requests,
        "errors": errors,
        "elapsed_s": elapsed_s,
        "requests_per_s": completed_requests / elapsed_s,
        "texts_per_s": completed_requests * texts_per_request / elapsed_s,
        **latency_ms(latencies_s),
    }


def spread(values: Iterable[float | None]) -> dict[str, float | None]:
    """Median, min and max of the rounds (None values, e.g. no latency in-process, skipped)."""
    data = [v for v in values if v is not None]
    if not data:
        return {"median": None, "min": None, "max": None}
    return {"median": statistics.median(data), "min": min(data), "max": max(data)}


def summarize(records: list[dict[str, Any]], peers: Sequence[str] = PEERS) -> list[dict[str, Any]]:
    """One row per (task, texts per request, server): the rounds' median and range, and the
    ratio of its median throughput to the faster peer's median at the same size."""
    groups: dict[tuple[str, int, str], list[dict[str, Any]]] = {}
    for rec in records:
        key = (rec.get("task", "embed"), rec["texts_per_request"], rec["server"])
        groups.setdefault(key, []).append(rec)
    rows = []
    for (task, size, server), recs in groups.items():
        rows.append(
            {
                "task": task,
                "texts_per_request": size,
                "server": server,
                "rounds": len(recs),
                "errors": sum(r.get("errors", 0) for r in recs),
                "texts_per_s": spread(r["texts_per_s"] for r in recs),
                "requests_per_s": spread(r["requests_per_s"] for r in recs),
                "p50_ms": spread(r.get("p50_ms") for r in recs),
                "p99_ms": spread(r.get("p99_ms") for r in recs),
            }
        )
    for row in rows:
        best = faster_peer(rows, row["task"], row["texts_per_request"], peers)
        mine = row["texts_per_s"]["median"]
        row["faster_peer"] = best[0] if best else None
        row["ratio_to_faster_peer"] = mine / best[1] if best and best[1] else None
    order = {name: i for i, name in enumerate(("app", *peers, "in-process"))}
    rows.sort(
        key=lambda r: (r["task"], r["texts_per_request"], order.get(r["server"], 99), r["server"])
    )
    return rows


def faster_peer(
    rows: list[dict[str, Any]], task: str, size: int, peers: Sequence[str] = PEERS
) -> tuple[str, float] | None:
    """(name, median texts/s) of the fastest peer measured at this task and size."""
    candidates = [
        (r["server"], r["texts_per_s"]["median"])
        for r in rows
        if r["task"] == task
        and r["texts_per_request"] == size
        and r["server"] in peers
        and r["texts_per_s"]["median"] is not None
    ]
    return max(candidates, key=lambda c: c[1]) if candidates else None


def _range(s: dict[str, float | None], digits: int = 1) -> str:
    if s["median"] is None:
        return "-"
    return f"{s['median']:,.{digits}f} ({s['min']:,.{digits}f}-{s['max']:,.{digits}f})"


def _num(v: float | None, digits: int = 1) -> str:
    return "-" if v is None else f"{v:,.{digits}f}"


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """Median (min-max) of the rounds per server and size; latencies are medians of the rounds'
    p50/p99. Units: texts/s for embeddings, pairs/s for rerank."""
    headers = [
        "task",
        "texts/request",
        "server",
        "texts/s median (min-max)",
        "req/s median (min-max)",
        "p50 ms",
        "p99 ms",
        "x faster peer",
        "rounds",
        "errors",
    ]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for r in rows:
        ratio = r["ratio_to_faster_peer"]
        cells = [
            r["task"],
            str(r["texts_per_request"]),
            r["server"],
            _range(r["texts_per_s"]),
            _range(r["requests_per_s"]),
            _num(r["p50_ms"]["median"]),
            _num(r["p99_ms"]["median"]),
            "-" if ratio is None else f"{ratio:.2f} ({r['faster_peer']})",
            str(r["rounds"]),
            str(r["errors"]),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(rows: list[dict[str, Any]], path: Path, title: str) -> Path:
    """Bars of median texts/s per server, one panel per (task, size), min-max as error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = sorted({(r["task"], r["texts_per_request"]) for r in rows})
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4), squeeze=False)
    for ax, (task, size) in zip(axes[0], panels, strict=True):
        mine = [r for r in rows if r["task"] == task and r["texts_per_request"] == size]
        names = [r["server"] for r in mine]
        med = [r["texts_per_s"]["median"] or 0.0 for r in mine]
        low = [m - (r["texts_per_s"]["min"] or m) for m, r in zip(med, mine, strict=True)]
        high = [(r["texts_per_s"]["max"] or m) - m for m, r in zip(med, mine, strict=True)]
        ax.bar(names, med, yerr=[low, high], capsize=4, color="#4c72b0")
        unit = "pairs/s" if task == "rerank" else "texts/s"
        ax.set_title(f"{task}: {size} per request")
        ax.set_ylabel(f"{unit} (median, min-max)")
        ax.tick_params(axis="x", rotation=30)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
