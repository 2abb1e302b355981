"""Autoscaling seen working: the `cpu-embed-autoscale` set (embeddings, 1 to 3 replicas of a
quarter CPU) under an ops.loadgen ramp, then a trickle while it scales back down.

Every 2 s the platform's own `/metrics` is read: the pool's healthy replicas and Serve's
autoscaling target (`ray_serve_deployment_replica_healthy`,
`ray_serve_autoscaling_target_replicas`), the requests queued at the handle and running at the
replicas (`ray_serve_deployment_queued_queries`, `ray_serve_num_ongoing_requests_at_replicas`), the
requests the Gateway holds for the pool (`ray_platform_gateway_held_requests`: its coalescing
queue, which Serve does not see)
and the Gateway's mean latency per interval (`ray_platform_request_duration_seconds`). Writes
samples, both runs' records, a plot and a table to results/autoscale-cpu/. Run it under
/work/tools/quiet on the 2-core machine.

    python -m ops.bench.autoscale [--port 8061]
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from ops.loadgen import report
from ops.loadgen.cli import execute
from ops.loadgen.scenario import load_scenario
from ops.recipes.render import rendered_path
from recipes.paths import RESULTS_ROOT

SET_ID = "cpu-embed-autoscale"
POOL = "embed-minilm-cpu-autoscale"
SAMPLE_S = 2.0
SETTLE_S = 90.0


def sample(text: str) -> dict[str, float]:
    """The pool's numbers in one scrape of the platform's /metrics."""
    out = {"replicas": 0.0, "target": float("nan"), "held": 0.0, "queued": 0.0, "ongoing": 0.0}
    out |= {"latency_sum": 0.0, "latency_count": 0.0}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = s.labels
            if labels.get("deployment") == POOL:
                if s.name == "ray_serve_deployment_replica_healthy":
                    out["replicas"] += s.value
                elif s.name == "ray_serve_autoscaling_target_replicas":
                    out["target"] = s.value
                elif s.name == "ray_serve_deployment_queued_queries":
                    out["queued"] += s.value
                elif s.name == "ray_serve_num_ongoing_requests_at_replicas":
                    out["ongoing"] += s.value
            if labels.get("pool") == POOL and s.name == "ray_platform_gateway_held_requests":
                out["held"] += s.value
            if labels.get("pool") == POOL and labels.get("endpoint") == "/v1/embeddings":
                if s.name == "ray_platform_request_duration_seconds_sum":
                    out["latency_sum"] += s.value
                elif s.name == "ray_platform_request_duration_seconds_count":
                    out["latency_count"] += s.value
    return out


class Sampler(threading.Thread):
    def __init__(self, url: str):
        super().__init__(daemon=True)
        self.url = url
        self.samples: list[dict[str, Any]] = []
        self.marks: dict[str, float] = {}
        self.stop = threading.Event()
        self.t0 = time.monotonic()

    def now(self) -> float:
        return time.monotonic() - self.t0

    def mark(self, name: str) -> None:
        self.marks[name] = self.now()

    def run(self) -> None:
        with httpx.Client(timeout=10) as client:
            while not self.stop.wait(SAMPLE_S):
                try:
                    text = client.get(f"{self.url}/metrics").text
                except httpx.HTTPError:
                    continue
                self.samples.append({"t": self.now(), **sample(text)})

    def replicas(self) -> float:
        return self.samples[-1]["replicas"] if self.samples else 0.0


def with_latency(samples: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean Gateway latency over each interval, from the histogram's sum and count."""
    out, prev = [], None
    for s in samples:
        row = dict(s)
        row["latency_ms"] = None
        if prev is not None and s["latency_count"] > prev["latency_count"]:
            d_sum = s["latency_sum"] - prev["latency_sum"]
            row["latency_ms"] = 1000 * d_sum / (s["latency_count"] - prev["latency_count"])
        out.append(row)
        prev = s
    return out


def plot(samples: list[dict[str, Any]], marks: dict[str, float], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [s["t"] for s in samples]
    fig, axes = plt.subplots(3, 1, figsize=(9, 8), sharex=True)
    axes[0].step(t, [s["replicas"] for s in samples], where="post", label="healthy replicas")
    axes[0].step(t, [s["target"] for s in samples], where="post", ls="--", label="target")
    axes[0].set_ylabel("replicas")
    axes[1].plot(t, [s["held"] for s in samples], label="held by the Gateway (the pool's queue)")
    axes[1].plot(t, [s["queued"] for s in samples], label="queued at the handle")
    axes[1].plot(t, [s["ongoing"] for s in samples], label="running at replicas")
    axes[1].set_ylabel("requests")
    axes[2].plot(t, [s["latency_ms"] for s in samples], marker=".", label="Gateway mean latency")
    axes[2].set_ylabel("ms")
    axes[2].set_xlabel("s since the app was ready")
    for ax in axes:
        for name, at in marks.items():
            ax.axvline(at, color="grey", lw=0.8)
            ax.text(at, ax.get_ylim()[1], name, fontsize=7, va="top")
        ax.legend(loc="upper right", fontsize=8)
    fig.suptitle(f"{POOL}: ops.loadgen ramp, then a trickle (platform /metrics)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def summarize(samples, marks, runs: dict[str, Any]) -> dict[str, Any]:
    peak = max((s["replicas"] for s in samples), default=0)
    first_up = next((s["t"] for s in samples if s["replicas"] > 1), None)
    back = None
    if first_up is not None:
        after_peak = [s for s in samples if s["t"] > first_up]
        back = next((s["t"] for s in after_peak if s["replicas"] == 1), None)
    failed = {name: sum(1 for r in run.records if not r.ok) for name, run in runs.items()}
    sent = {name: len(run.records) for name, run in runs.items()}
    return {
        "peak_replicas": peak,
        "first_above_one_s": first_up,
        "back_to_one_s": back,
        "requests": sent,
        "failed": failed,
        "marks": marks,
    }


def _seconds(value: float | None) -> str:
    return "never" if value is None else f"{value:.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8061)
    parser.add_argument("--out", type=Path, default=RESULTS_ROOT / "autoscale-cpu")
    opts = parser.parse_args()
    from app.launcher import running_app

    opts.out.mkdir(parents=True, exist_ok=True)
    runs = {}
    with running_app(rendered_path(SET_ID), opts.port) as url:
        sampler = Sampler(url)
        sampler.start()
        time.sleep(10)
        for name in ("autoscale-ramp", "autoscale-trickle"):
            sampler.mark(f"{name} start")
            runs[name] = execute(load_scenario(name), url, progress=False)
            report.write_run(runs[name], opts.out / name)
        sampler.mark("load ends")
        deadline = time.monotonic() + SETTLE_S
        while time.monotonic() < deadline and sampler.replicas() > 1:
            time.sleep(SAMPLE_S)
        time.sleep(2 * SAMPLE_S)
        sampler.stop.set()
        sampler.join()
    samples = with_latency(sampler.samples)
    summary = summarize(samples, sampler.marks, runs)
    (opts.out / "samples.json").write_text(
        json.dumps({"summary": summary, "samples": samples}, indent=2) + "\n"
    )
    plot(samples, sampler.marks, opts.out / "autoscale.png")
    lines = [
        f"# {POOL}: autoscaling under an ops.loadgen ramp ({time.strftime('%Y-%m-%d')})",
        "",
        "| peak replicas | first > 1 at (s) | back to 1 at (s) | ramp requests / failed "
        "| trickle (scale-down) requests / failed |",
        "|---|---|---|---|---|",
        f"| {summary['peak_replicas']:g} | {_seconds(summary['first_above_one_s'])} "
        f"| {_seconds(summary['back_to_one_s'])} "
        f"| {summary['requests']['autoscale-ramp']} / {summary['failed']['autoscale-ramp']} "
        f"| {summary['requests']['autoscale-trickle']} / "
        f"{summary['failed']['autoscale-trickle']} |",
        "",
        f"Marks (s): {json.dumps({k: round(v, 1) for k, v in sampler.marks.items()})}. "
        "Plot: autoscale.png; samples: samples.json; each run's records and table beside.",
    ]
    (opts.out / "RESULTS.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
