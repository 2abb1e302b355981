"""`python -m ops.capacity`: the traffic shape from the Gateway's request log (or a load
scenario), a pool's measured envelope, and the plan of a recipe set for a shape.
Results land in results/capacity/<kind>-<name>-<time>/."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import typer

from ops.capacity import report
from ops.capacity.envelope import calibrate as run_calibration
from ops.capacity.envelope import from_summaries, load_envelope
from ops.capacity.plan import Options, plan_pool, routed
from ops.capacity.shape import load_shape, read_requests, shape_from_log, shape_from_scenario
from ops.loadgen.scenario import SLO, load_scenario
from recipes.engines import LLMEngineConfig
from recipes.loader import load_recipe, load_set, load_set_recipes
from recipes.paths import PROJECT_ROOT

app = typer.Typer(help=__doc__, no_args_is_help=True, add_completion=False)
RESULTS = PROJECT_ROOT / "results" / "capacity"


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _folder(kind: str, name: str, out: Path | None) -> Path:
    folder = out or RESULTS / f"{kind}-{name}-{time.strftime('%Y%m%d-%H%M%S')}"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@app.command()
def shape(
    logs: list[Path] = typer.Argument(
        None, help="Gateway log files, or folders with them (Ray's session logs/serve/)"
    ),
    scenario: str = typer.Option(None, help="a load scenario instead of logs"),
    bucket_s: float = typer.Option(60.0, help="arrival-rate bucket (s): peak and percentiles"),
    block_size: int = typer.Option(16, help="scenario: the engine's KV block size (hashing)"),
    samples: int = typer.Option(500, help="scenario: requests built per profile"),
    tokenizer: Path = typer.Option(None, help="scenario: a model folder whose tokenizer counts"),
    out: Path = typer.Option(None, help="result folder"),
) -> None:
    """Write the traffic shape per model and workload profile (shape.json, table.md)."""
    if scenario:
        tok = None
        if tokenizer is not None:
            from transformers import AutoTokenizer

            tok = AutoTokenizer.from_pretrained(str(tokenizer))
        found = shape_from_scenario(
            load_scenario(scenario), samples, block_size, _now(), tok, bucket_s
        )
        name = found.source.split()[-1]
    else:
        if not logs:
            typer.echo("give Gateway log files/folders, or --scenario", err=True)
            sys.exit(2)
        rows = read_requests(logs)
        if not rows:
            typer.echo("no Gateway request lines in those logs", err=True)
            sys.exit(1)
        found = shape_from_log(rows, bucket_s, ", ".join(map(str, logs)), _now())
        name = "log"
    folder = _folder("shape", name, out)
    (folder / "shape.json").write_text(found.model_dump_json(indent=2) + "\n")
    table = report.shape_table(found)
    (folder / "table.md").write_text(table + "\n")
    typer.echo(table)
    typer.echo(f"\nwritten to {folder / 'shape.json'}")


@app.command()
def calibrate(
    recipe_ref: str = typer.Argument(..., help="recipe-id@version of the running pool"),
    url: str = typer.Option("http://127.0.0.1:8000", help="the app serving it"),
    concurrency: list[int] = typer.Option([1, 2, 4, 8], help="load steps (closed loop)"),
    input_tokens: int = typer.Option(128),
    output_tokens: int = typer.Option(64),
    duration_s: float = typer.Option(30.0, help="per step"),
    from_summaries_of: list[Path] = typer.Option(
        [], "--from-summaries", help="derive from load summaries already on disk (no run)"
    ),
    out: Path = typer.Option(None),
) -> None:
    """Sweep the pool's load and store its envelope (envelope.json, table.md, envelope.png),
    the results file its recipe's expectations.envelope points to."""
    recipe = load_recipe(recipe_ref)
    if not isinstance(recipe.engine, LLMEngineConfig):
        typer.echo(f"{recipe_ref} is not an LLM pool", err=True)
        sys.exit(2)
    if from_summaries_of:
        slo = SLO(ttft_ms=recipe.slo.ttft_p99_ms, tpot_ms=recipe.slo.tpot_p99_ms)
        env = from_summaries(recipe, from_summaries_of, slo, _now(), input_tokens)
    else:
        env = run_calibration(
            recipe, url, concurrency, input_tokens, output_tokens, duration_s, log=typer.echo
        )
    folder = _folder("envelope", f"{recipe.id}-v{recipe.version}", out)
    (folder / "envelope.json").write_text(env.model_dump_json(indent=2) + "\n")
    table = report.envelope_table(env)
    (folder / "table.md").write_text(table + "\n")
    from ops.loadgen.report import plot_sweep

    points = [
        {
            "value": p.concurrency,
            "summary": {
                "output_throughput": p.output_throughput,
                "ttft_s": {"p99": _seconds(p.ttft_p99_ms)},
                "tpot_s": {"p99": _seconds(p.tpot_p99_ms)},
                "e2el_s": {"p99": _seconds(p.e2el_p99_ms)},
            },
        }
        for p in env.points
    ]
    plot_sweep(points, "concurrency", recipe.id, folder / "envelope.png")
    typer.echo(table)
    rel = (folder / "envelope.json").resolve().relative_to(PROJECT_ROOT)
    typer.echo(
        f"\nwritten to {rel}\nin the recipe's dossier:\n  results: [..., {rel}]\n"
        f"  expectations:\n    envelope:\n      file: {rel}\n"
        f"      max_concurrency_within_slo: {env.max_concurrency_within_slo}"
    )


def _seconds(ms: float | None) -> float | None:
    return None if ms is None else ms / 1000


@app.command()
def plan(
    shape_file: Path = typer.Option(..., "--shape", help="a shape.json from `shape`"),
    set_id: str = typer.Option(..., "--set", help="the recipe set to plan"),
    envelope: list[str] = typer.Option(
        [], help="recipe-id=envelope.json for a pool whose recipe names none"
    ),
    scale: float = typer.Option(1.0, help="multiply the shape's rates (growth)"),
    duration_s: float = typer.Option(240.0, help="simulated seconds per prediction"),
    max_replicas: int = typer.Option(16),
    out: Path = typer.Option(None),
) -> None:
    """Replicas, GPUs, prefill and KV-cache load and cost per pool for the shape's peak."""
    found = load_shape(shape_file)
    if scale != 1.0:
        for p in found.profiles:
            if p.rate is not None:
                p.rate.peak *= scale
            if p.concurrency is not None:
                p.concurrency = round(p.concurrency * scale)
    recipe_set = load_set(set_id)
    recipes = load_set_recipes(recipe_set)
    overrides = dict(item.split("=", 1) for item in envelope)
    opts = Options(duration_s=duration_s, warmup_s=duration_s / 12, max_replicas=max_replicas)
    plans = []
    for recipe in recipes:
        if not isinstance(recipe.engine, LLMEngineConfig):
            continue
        profiles = routed(found, recipe, recipes)
        if not profiles:
            continue
        declared = recipe.dossier.expectations.envelope
        path = overrides.get(recipe.id) or (declared.file if declared else None)
        env = load_envelope(path) if path else None
        typer.echo(f"planning {recipe.id} for {[p.profile for p in profiles]} ...")
        plans.append(plan_pool(recipe, profiles, env, path, opts))
    folder = _folder("plan", set_id, out)
    body = {
        "shape": str(shape_file),
        "set": recipe_set.ref,
        "scale": scale,
        "created": _now(),
        "model": "continuous-batching simulation (ops/capacity/queueing.py) calibrated from "
        "each pool's envelope",
        "pools": [p.model_dump(mode="json") for p in plans],
    }
    report.write_json(folder / "plan.json", body)
    table = report.plan_table(plans)
    (folder / "plan.md").write_text(table + "\n")
    report.plot_plan(plans, folder / "plan.png")
    typer.echo(table)
    typer.echo(f"\nwritten to {folder}")
