"""Tables, JSON and plots of traffic shapes, envelopes and plans."""

from __future__ import annotations

import json
from pathlib import Path

from ops.capacity.envelope import Envelope
from ops.capacity.plan import PoolPlan
from ops.capacity.shape import TrafficShape


def _f(value, fmt: str = "{:.1f}") -> str:
    return "-" if value is None else fmt.format(value)


def shape_table(shape: TrafficShape) -> str:
    lines = [
        f"traffic shape from {shape.source} (rates per {shape.bucket_s:g} s bucket)",
        "",
        "| model | profile | pools | requests | ok % | arrivals | rate p50/p99/peak req/s | "
        "prompt tok p50/p99 | output tok p50/p99 | stream % | prefix reuse (source) |",
        "|" + "---|" * 11,
    ]
    for p in shape.profiles:
        rate = p.rate
        arrivals = f"closed, {p.concurrency} in flight" if p.arrival == "closed" else "open"
        prefix = f"{100 * p.prefix.share:.1f}% ({p.prefix.source})" if p.prefix is not None else "-"
        lines.append(
            f"| {p.model} | {p.profile} | {', '.join(p.pools) or '-'} | {p.requests} | "
            f"{100 * p.ok_share:.0f} | {arrivals} | "
            + (f"{rate.p50:.2f}/{rate.p99:.2f}/{rate.peak:.2f}" if rate else "-")
            + f" | {_f(p.prompt_tokens and p.prompt_tokens.p50, '{:.0f}')}/"
            f"{_f(p.prompt_tokens and p.prompt_tokens.p99, '{:.0f}')} | "
            f"{_f(p.output_tokens and p.output_tokens.p50, '{:.0f}')}/"
            f"{_f(p.output_tokens and p.output_tokens.p99, '{:.0f}')} | "
            f"{100 * p.stream_share:.0f} | {prefix} |"
        )
    return "\n".join(lines)


def envelope_table(env: Envelope) -> str:
    f = env.step_model
    lines = [
        f"envelope of {env.recipe} ({env.source}; {env.measured})",
        "",
        "| concurrency | req/s | out tok/s | prefill tok/s | TTFT p50/p99 ms | TPOT p50/p99 ms | "
        "E2EL p50/p99 ms | KV usage max | meets SLO |",
        "|" + "---|" * 9,
    ]
    for p in env.points:
        lines.append(
            f"| {p.concurrency} | {p.request_throughput:.2f} | {p.output_throughput:.1f} | "
            f"{p.prefill_tokens_per_s:.0f} | {_f(p.ttft_p50_ms)}/{_f(p.ttft_p99_ms)} | "
            f"{_f(p.tpot_p50_ms)}/{_f(p.tpot_p99_ms)} | {_f(p.e2el_p50_ms)}/{_f(p.e2el_p99_ms)} "
            f"| {_f(p.kv_usage_max, '{:.3f}')} | {_f(p.meets_slo, '{}')} |"
        )
    lines += [
        "",
        f"step model: {1000 * f.base_s:.2f} ms + {1000 * f.per_seq_s:.3f} ms x decoding "
        f"sequences + {1e6 * f.per_prefill_token_s:.1f} us x prompt tokens "
        f"+ {1000 * f.ttft_overhead_s:.1f} ms serving path before the engine (prefill capacity "
        f"{_f(f.prefill_capacity_tokens_per_s, '{:.0f}')} tok/s); {f.note}",
        f"largest concurrency within the SLO {env.slo.model_dump(exclude_none=True)}: "
        f"{env.max_concurrency_within_slo}",
    ]
    return "\n".join(lines)


def plan_table(plans: list[PoolPlan]) -> str:
    lines = [
        "| pool | profiles | replicas now -> needed | GPUs | headroom (SLO / p99) | load headroom "
        "| prefill tok/s (share of capacity) | KV working set / budget GiB per replica "
        "(worst case) | USD/h | USD per accepted |",
        "|" + "---|" * 10,
    ]
    rows = [(p, "") for p in plans] + [
        (d, f" (dedicated, from {p.pool})") for p in plans for d in p.dedicated
    ]
    for p, tag in rows:
        head = ", ".join(f"{k} {v:.2f}x" for k, v in p.headroom.items()) or "-"
        lines.append(
            f"| {p.pool}{tag} | {', '.join(p.profiles)} | {p.replicas_now} -> "
            f"{_f(p.replicas_needed, '{}')} | {_f(p.gpus_needed, '{:g}')} | {head} | "
            f"{_f(p.rate_headroom, '{:.2f}x')} | {_f(p.prefill_tokens_per_s, '{:.0f}')} "
            f"({_f(p.prefill_share and 100 * p.prefill_share, '{:.1f}%')}) | "
            f"{_f(p.kv_working_set_gib, '{:.3f}')} / {_f(p.kv_budget_gib, '{:.2f}')} "
            f"({_f(p.kv_worst_case_gib, '{:.2f}')}) | {_f(p.usd_per_hour, '{:.3f}')} | "
            f"{_f(p.usd_per_accepted, '{:.6f}')} |"
        )
    lines.append("")
    for p, tag in rows:
        for label, pred in (("at the plan", p.at_plan), ("at replicas now", p.at_current)):
            if pred is None:
                continue
            for q in pred.profiles:
                lines.append(
                    f"- {p.pool}{tag} {label} ({pred.replicas} replica(s)): {q.profile} "
                    f"{q.rate:.2f} req/s, TTFT p50/p99 {_f(q.ttft_p50_ms)}/{_f(q.ttft_p99_ms)} ms "
                    f"(SLO {_f(q.slo.ttft_ms, '{:g}')}), TPOT p50/p99 {_f(q.tpot_p50_ms)}/"
                    f"{_f(q.tpot_p99_ms)} ms (SLO {_f(q.slo.tpot_ms, '{:g}')}), within SLO "
                    f"{100 * q.goodput_share:.1f}%"
                )
        if p.shared_pool_flag:
            lines.append(f"- FLAG {p.pool}: {p.shared_pool_flag}")
        if p.note:
            lines.append(f"- {p.pool}: {p.note}")
    return "\n".join(lines)


def write_json(path: Path, body) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(body, indent=2) + "\n")


def plot_plan(plans: list[PoolPlan], path: Path) -> None:
    """Per pool: replicas needed against load, and p99 TTFT against load at the planned
    replicas, with the SLO line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [(p, p.pool) for p in plans if p.curve] + [
        (d, f"{d.pool}, dedicated to {d.profiles[0]}")
        for p in plans
        for d in p.dedicated
        if d.curve
    ]
    if not rows:
        return
    fig, axes = plt.subplots(len(rows), 2, figsize=(11, 3.6 * len(rows)), squeeze=False)
    for (left, right), (p, title) in zip(axes, rows, strict=True):
        curve = [c for c in p.curve if c.profiles]
        held = [c for c in curve if c.meets_slo]
        missed = [c for c in curve if not c.meets_slo]
        left.plot([c.load_factor for c in held], [c.replicas for c in held], "o-", label="holds")
        if missed:
            left.plot(
                [c.load_factor for c in missed],
                [c.replicas for c in missed],
                "rx",
                label=f"not held at {missed[0].replicas}",
            )
        left.set_title(f"{title}: replicas to hold the SLO", fontsize=9)
        left.set_xlabel("load (x the shape's peak)")
        left.set_ylabel("replicas")
        left.legend(fontsize=7)
        xs = [c.load_factor for c in curve]
        for q_index, name in enumerate(p.profiles):
            ys = [c.profiles[q_index].ttft_p99_ms for c in curve]
            line = right.plot(xs, ys, marker="o", label=f"{name} TTFT p99")
            slo = curve[0].profiles[q_index].slo.ttft_ms if curve else None
            if slo:
                right.axhline(slo, linestyle="--", color=line[0].get_color(), label=f"{name} SLO")
        right.set_title(f"{title}: TTFT p99 at those replicas", fontsize=9)
        right.set_xlabel("load (x the shape's peak)")
        right.set_ylabel("ms")
        right.set_yscale("log")
        right.legend(fontsize=7)
        for ax in (left, right):
            ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
