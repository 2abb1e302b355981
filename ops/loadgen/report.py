"""Terminal table, JSON and PNG plots of runs, sweeps and comparisons."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ops.loadgen.runner import RunResult


def _ms(stats: dict[str, float | None], key: str) -> str:
    value = stats.get(key)
    return "-" if value is None else f"{value * 1000:.1f}"


def table(summary: dict[str, Any]) -> str:
    head = (
        "| profile | ok/sent | err % | 429 % | req/s | out tok/s | TTFT p50/p99 ms | "
        "TPOT p50/p99 ms | ITL p50/p99 ms | E2EL p50/p99 ms | goodput req/s |"
    )
    lines = [head, "|" + "---|" * 11]
    for name, s in summary.items():
        goodput = s.get("goodput")
        lines.append(
            f"| {name} | {s['completed']}/{s['requests']} | {100 * s['error_rate']:.1f} | "
            f"{100 * s['rejected_429_rate']:.1f} | {s['request_throughput']:.2f} | "
            f"{s['output_throughput']:.1f} | "
            f"{_ms(s['ttft_s'], 'p50')}/{_ms(s['ttft_s'], 'p99')} | "
            f"{_ms(s['tpot_s'], 'p50')}/{_ms(s['tpot_s'], 'p99')} | "
            f"{_ms(s['itl_s'], 'p50')}/{_ms(s['itl_s'], 'p99')} | "
            f"{_ms(s['e2el_s'], 'p50')}/{_ms(s['e2el_s'], 'p99')} | "
            f"{'-' if goodput is None else f'{goodput:.2f}'} |"
        )
    return "\n".join(lines)


def write_run(result: RunResult, folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = {
        "json": folder / "summary.json",
        "records": folder / "records.jsonl",
        "table": folder / "table.md",
        "cdf": folder / "latency_cdf.png",
    }
    paths["json"].write_text(json.dumps(result.to_json(), indent=2) + "\n")
    paths["records"].write_text(result.jsonl())
    paths["table"].write_text(table(result.summary) + "\n")
    plot_cdf(result, paths["cdf"])
    return paths


def plot_cdf(result: RunResult, path: Path) -> None:
    """Latency CDF per profile: TTFT where there is one, end-to-end latency always."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for name in sorted({r.profile for r in result.records}):
        mine = [r for r in result.records if r.profile == name and r.ok]
        for ax, values in (
            (axes[0], [r.ttft for r in mine if r.ttft is not None]),
            (axes[1], [r.e2el for r in mine]),
        ):
            if values:
                xs = np.sort(np.array(values) * 1000)
                ax.plot(xs, np.arange(1, len(xs) + 1) / len(xs), label=name)
    for ax, title in ((axes[0], "TTFT"), (axes[1], "End-to-end latency")):
        ax.set_title(f"{title} CDF ({result.scenario})")
        ax.set_xlabel("ms")
        ax.set_ylabel("share of requests")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_sweep(points: list[dict[str, Any]], over: str, profile: str, path: Path) -> None:
    """Throughput and p99 latencies against the swept concurrency or rate."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = [p["value"] for p in points]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    left.plot(xs, [p["summary"]["output_throughput"] for p in points], marker="o")
    left.set_ylabel("output tokens/s")
    right2 = right
    for key, label in (("ttft_s", "TTFT p99"), ("tpot_s", "TPOT p99"), ("e2el_s", "E2EL p99")):
        values = [p["summary"][key]["p99"] for p in points]
        if any(v is not None for v in values):
            right2.plot(
                xs, [None if v is None else v * 1000 for v in values], marker="o", label=label
            )
    right2.set_ylabel("ms")
    right2.set_yscale("log")
    right2.legend(fontsize=8)
    for ax in (left, right):
        ax.set_xlabel(over)
        ax.grid(alpha=0.3)
        ax.set_title(f"{profile}: {over} sweep")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def agent_table(body: dict[str, Any]) -> str:
    """Agent sessions: one row per measured round, then each policy's medians (with the
    spread over its rounds)."""
    head = (
        "| round | policy | sessions ok | turns (tool calls) | TTFT p50/p99 ms | "
        "latency p50 ms | prefix-cache hit rate | tokens/session | $/session |"
    )
    lines = [head, "|" + "---|" * 9]
    for r in body["rounds"]:
        hit = r["prefix_cache_hit_rate"]
        tokens, usd = r["tokens_per_session"], r["usd_per_session"]
        lines.append(
            f"| {r['label']} | {r['policy']} | {r['sessions_completed']}/{r['sessions']} | "
            f"{r['turns']} ({r['tool_call_turns']}) | "
            f"{_ms(r['ttft_s'], 'p50')}/{_ms(r['ttft_s'], 'p99')} | "
            f"{_ms(r['latency_s'], 'p50')} | {'-' if hit is None else f'{hit:.3f}'} | "
            f"{'-' if tokens is None else f'{tokens:.0f}'} | "
            f"{'-' if usd is None else f'{usd:.2e}'} |"
        )
    lines += ["", "| policy | TTFT p50 ms (min-max) | TTFT p99 ms (min-max) | hit rate (min-max) |"]
    lines.append("|---|---|---|---|")

    def cell(stat: dict[str, Any], scale: float, fmt: str) -> str:
        if stat["median"] is None:
            return "-"
        return (
            f"{stat['median'] * scale:{fmt}} ({stat['min'] * scale:{fmt}}-"
            f"{stat['max'] * scale:{fmt}})"
        )

    for policy, s in body["policies"].items():
        lines.append(
            f"| {policy} | {cell(s['ttft_p50_s'], 1000, '.0f')} | "
            f"{cell(s['ttft_p99_s'], 1000, '.0f')} | {cell(s['prefix_cache_hit_rate'], 1, '.3f')} |"
        )
    by_turn = " ".join(
        f"{r['label']}: "
        + ", ".join(f"t{k}={v * 1000:.0f}" for k, v in r["ttft_p50_s_by_turn"].items())
        for r in body["rounds"]
    )
    lines += ["", f"TTFT p50 ms by turn: {by_turn}"]
    return "\n".join(lines) + "\n"


def plot_agent(body: dict[str, Any], path: Path) -> None:
    """TTFT p50 per turn index, one line per measured round (colour by policy)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {}
    fig, ax = plt.subplots(figsize=(7, 4))
    for r in body["rounds"]:
        colour = colours.setdefault(r["policy"], f"C{len(colours)}")
        turns = sorted(r["ttft_p50_s_by_turn"], key=int)
        hit = r["prefix_cache_hit_rate"]
        ax.plot(
            [int(t) for t in turns],
            [r["ttft_p50_s_by_turn"][t] * 1000 for t in turns],
            "o-",
            color=colour,
            alpha=0.8,
            label=f"{r['label']} (hit {hit:.2f})" if hit is not None else r["label"],
        )
    ax.set_xlabel("turn of the session")
    ax.set_ylabel("TTFT p50 (ms)")
    ax.set_title(f"agent sessions on {body['recipe'].split('+')[0]}", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
