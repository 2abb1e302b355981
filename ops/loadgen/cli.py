"""`python -m ops.loadgen`: run a scenario, sweep for the capacity envelope, or compare two
endpoints interleaved. Results land in results/loadgen/<scenario>-<time>/."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import typer

from ops.loadgen import report
from ops.loadgen.metrics import summarize
from ops.loadgen.runner import RunResult, run_http
from ops.loadgen.scenario import Arrival, Scenario, load_scenario

app = typer.Typer(help=__doc__, no_args_is_help=True, add_completion=False)
RESULTS = Path(__file__).resolve().parents[1] / "results" / "loadgen"
LLM_KINDS = ("chat", "completion")


def _out_dir(name: str, out: Path | None) -> Path:
    return out or RESULTS / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"


def _with_models(scenario: Scenario, model: str | None, model_map: list[str]) -> Scenario:
    """Point the scenario's profiles at the models a target serves (--model, --model-map a=b)."""
    mapping = dict(item.split("=", 1) for item in model_map)
    profiles = []
    for p in scenario.profiles:
        name = mapping.get(p.model, model if (model and p.kind in LLM_KINDS) else p.model)
        profiles.append(p.model_copy(update={"model": name}))
    return scenario.model_copy(update={"profiles": profiles})


def _clips_if_needed(scenario: Scenario) -> list[bytes] | None:
    if not any(p.kind == "stt" for p in scenario.profiles):
        return None
    from ops.speech import clips

    return clips()


def execute(scenario: Scenario, url: str, progress: bool = True) -> RunResult:
    return asyncio.run(run_http(scenario, url, _clips_if_needed(scenario), progress))


INPROCESS = "inprocess:"


async def _compare_rounds(sides: dict, rounds: int, gpu_util: float) -> dict[str, list[RunResult]]:
    """A B A B ... in one event loop, so an in-process engine (`inprocess:<recipe@version>`)
    stays up for every round."""
    from ops.loadgen.runner import run as run_scenario

    engines = {}
    for side, (url, _) in sides.items():
        if url.startswith(INPROCESS):
            from ops.loadgen.inprocess import start_engine

            engines[side] = await start_engine(url[len(INPROCESS) :], gpu_util)
    results: dict[str, list[RunResult]] = {side: [] for side in sides}
    for i in range(rounds):
        for side, (url, scenario) in sides.items():
            typer.echo(f"round {i + 1}/{rounds}: {side} {url}")
            if side in engines:
                from ops.loadgen.inprocess import inprocess_sender

                send = inprocess_sender(engines[side])
                result = await run_scenario(scenario, send, url, progress=False)
            else:
                result = await run_http(scenario, url, _clips_if_needed(scenario), False)
            results[side].append(result)
    for engine in engines.values():
        engine.shutdown()
    return results


@app.command("run")
def run_command(
    scenario_name: str = typer.Argument(..., help="a name in ops/loadgen/scenarios or a path"),
    url: str = typer.Option("http://127.0.0.1:8000", help="the endpoint under test"),
    model: str = typer.Option(None, help="model for every chat/completion profile"),
    model_map: list[str] = typer.Option([], help="rename a scenario model: old=new"),
    out: Path = typer.Option(None, help="result folder"),
) -> None:
    """Run a scenario; print the table, write summary.json, records.jsonl and the CDF plot."""
    scenario = _with_models(load_scenario(scenario_name), model, model_map)
    result = execute(scenario, url)
    paths = report.write_run(result, _out_dir(scenario.name, out))
    typer.echo(report.table(result.summary))
    typer.echo(f"\nwritten to {paths['json'].parent}")


def _with_load(scenario: Scenario, profile: str, over: str, value: float) -> Scenario:
    arrival = (
        Arrival(type="concurrency", concurrency=int(value))
        if over == "concurrency"
        else Arrival(type="poisson", rate=value)
    )
    profiles = [
        p.model_copy(update={"arrival": arrival, "share": None})
        for p in scenario.profiles
        if p.name == profile
    ]
    if not profiles:
        raise typer.BadParameter(f"no profile '{profile}' in {scenario.name}")
    return scenario.model_copy(update={"profiles": profiles, "arrival": None})


def meets(summary: dict, slo) -> bool:
    """A load point meets the SLO when nothing failed and every bounded p99 is within it."""
    if summary["failed"]:
        return False
    for limit, key in ((slo.ttft_ms, "ttft_s"), (slo.tpot_ms, "tpot_s"), (slo.e2e_ms, "e2el_s")):
        p99 = summary[key]["p99"]
        if limit is not None and p99 is not None and p99 * 1000 > limit:
            return False
    return True


@app.command()
def sweep(
    scenario_name: str = typer.Argument(...),
    profile: str = typer.Option(..., help="the profile whose load is swept"),
    over: str = typer.Option("concurrency", help="concurrency or rate"),
    values: list[float] = typer.Option([1, 2, 4, 8, 16, 32, 64], help="load points, ascending"),
    url: str = typer.Option("http://127.0.0.1:8000"),
    model: str = typer.Option(None),
    model_map: list[str] = typer.Option([]),
    out: Path = typer.Option(None),
) -> None:
    """Find the largest concurrency or rate at which the profile still meets its SLO (the
    capacity envelope of the pool it reaches), like `vllm bench sweep serve_sla`."""
    base = _with_models(load_scenario(scenario_name), model, model_map)
    slo = next(p.slo for p in base.profiles if p.name == profile)
    points, best = [], None
    for value in sorted(values):
        result = execute(_with_load(base, profile, over, value), url)
        summary = result.summary[profile]
        ok = meets(summary, slo)
        points.append({"value": value, "meets_slo": ok, "summary": summary})
        typer.echo(f"{over}={value:g}: {'meets' if ok else 'misses'} the SLO")
        if ok:
            best = value
    folder = _out_dir(f"{base.name}-sweep-{profile}", out)
    folder.mkdir(parents=True, exist_ok=True)
    body = {"scenario": base.name, "profile": profile, "over": over, "slo": slo.model_dump(),
            "largest_meeting_slo": best, "points": points}  # fmt: skip
    (folder / "sweep.json").write_text(json.dumps(body, indent=2) + "\n")
    report.plot_sweep(points, over, profile, folder / "sweep.png")
    typer.echo(f"largest {over} meeting the SLO: {best}\nwritten to {folder}")


@app.command()
def compare(
    scenario_name: str = typer.Argument(...),
    a: str = typer.Option(..., help="URL of A (bare vllm serve), or inprocess:<recipe@version>"),
    b: str = typer.Option(..., help="URL of B (e.g. this platform)"),
    model_a: str = typer.Option(None, help="LLM model name on A"),
    model_b: str = typer.Option(None, help="LLM model name on B"),
    rounds: int = typer.Option(4, help="A B A B ... rounds; each runs the whole scenario"),
    inprocess_gpu_util: float = typer.Option(0.3, help="gpu_memory_utilization in-process"),
    out: Path = typer.Option(None),
) -> None:
    """Run the same scenario against two endpoints, interleaved, and report B relative to A;
    writes compare.json and each round's records."""
    base = load_scenario(scenario_name)
    sides = {"A": (a, _with_models(base, model_a, [])), "B": (b, _with_models(base, model_b, []))}
    results = asyncio.run(_compare_rounds(sides, rounds, inprocess_gpu_util))
    body = {"scenario": base.name, "rounds": rounds, "a": a, "b": b, "sides": {}}
    for side, runs in results.items():
        records = [r for run in runs for r in run.records]
        duration = sum(run.window[1] - run.window[0] for run in runs)
        body["sides"][side] = summarize(records, duration)
    body["ratios"] = ratios(body["sides"]["A"], body["sides"]["B"])
    folder = _out_dir(f"{base.name}-compare", out)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "compare.json").write_text(json.dumps(body, indent=2) + "\n")
    # every request of every round, to find where an outlier came from
    for side, runs in results.items():
        for i, run in enumerate(runs, 1):
            (folder / f"records-{side}-round{i}.jsonl").write_text(run.jsonl())
    typer.echo(report.table({f"A {a}": body["sides"]["A"], f"B {b}": body["sides"]["B"]}))
    typer.echo(json.dumps(body["ratios"], indent=2))
    typer.echo(f"written to {folder}")


def ratios(a: dict, b: dict) -> dict[str, float | None]:
    def diff_ms(key: str, p: str) -> float | None:
        x, y = a[key][p], b[key][p]
        return None if x is None or y is None else (y - x) * 1000

    return {
        "output_throughput_b_over_a": (
            b["output_throughput"] / a["output_throughput"] if a["output_throughput"] else None
        ),
        "request_throughput_b_over_a": (
            b["request_throughput"] / a["request_throughput"] if a["request_throughput"] else None
        ),
        "ttft_p50_ms_b_minus_a": diff_ms("ttft_s", "p50"),
        "ttft_p99_ms_b_minus_a": diff_ms("ttft_s", "p99"),
        "tpot_p50_ms_b_minus_a": diff_ms("tpot_s", "p50"),
        "tpot_p99_ms_b_minus_a": diff_ms("tpot_s", "p99"),
        "e2el_p50_ms_b_minus_a": diff_ms("e2el_s", "p50"),
    }


@app.command()
def agent(
    scenario_name: str = typer.Argument("agent-sessions", help="an agent scenario name or path"),
    url: str = typer.Option("http://127.0.0.1:8000", help="the platform under test"),
    ab: bool = typer.Option(False, help="interleave prefix-affinity and power-of-two rounds"),
    rounds: int = typer.Option(3, min=1, help="measured rounds (per policy with --ab)"),
    warmup: bool = typer.Option(True, help="one unmeasured round first"),
    budget_s: float = typer.Option(None, help="start no new round (or A/B pair) after this"),
    out: Path = typer.Option(None),
) -> None:
    """Agent sessions against an agentic pool: per-turn TTFT, prefix-cache hit rate, cost per
    session; with --ab, the pool's prefix-affinity router against Serve's power of two, same
    run, interleaved rounds."""
    import httpx

    from ops.loadgen import agent as sessions
    from recipes.loader import load_recipe

    scenario = sessions.load_agent_scenario(scenario_name)
    probe = httpx.post(
        f"{url}/v1/chat/completions",
        json={"model": scenario.model, "messages": [{"role": "user", "content": "Hi"}],
              "max_tokens": 1},
        headers=scenario.headers, timeout=120,
    )  # fmt: skip
    probe.raise_for_status()
    ref = probe.headers["x-recipe"]
    recipe = load_recipe(ref.split("+", 1)[0])
    replicas = recipe.deployment.autoscaling.max_replicas
    policies = ["prefix_affinity", "power_of_two"] if ab else ["as_configured"]
    # (label, policy, shape seed): the rounds of one pair run sessions of the same shapes.
    plan = [("warmup", policies[0], -1)] if warmup else []
    plan += [(f"round{i + 1}-{p}", p, i) for i in range(rounds) for p in policies]
    folder = _out_dir(f"{scenario.name}{'-ab' if ab else ''}", out)
    folder.mkdir(parents=True, exist_ok=True)
    summaries = []
    started = time.time()
    for n, (label, policy, shape) in enumerate(plan):
        if budget_s is not None and time.time() - started > budget_s and policy == policies[0]:
            typer.echo(f"budget of {budget_s:g}s spent: {label} and later rounds not run")
            break
        typer.echo(f"{label}: {scenario.sessions} sessions, {scenario.parallel} in parallel")
        rnd = asyncio.run(
            sessions.run_round(
                url, scenario, scenario.seed + n, policy, label, scenario.seed + shape
            )
        )
        (folder / f"records-{label}.jsonl").write_text(sessions.round_records(rnd))
        summary = sessions.summarize_round(rnd, recipe.cost.usd_per_hour, replicas)
        typer.echo(
            f"  TTFT p50 {summary['ttft_s']['p50']:.3f}s p99 {summary['ttft_s']['p99']:.3f}s, "
            f"hit rate {summary['prefix_cache_hit_rate']}, failed {summary['turns_failed']}"
        )
        if label != "warmup":
            summaries.append(summary)
    body = {
        "scenario": scenario.model_dump(),
        "url": url,
        "recipe": ref,
        "replicas": replicas,
        "usd_per_hour": recipe.cost.usd_per_hour,
        "rounds": summaries,
        "policies": sessions.compare_policies(summaries),
    }
    (folder / "agent.json").write_text(json.dumps(body, indent=2) + "\n")
    text = report.agent_table(body)
    (folder / "agent.md").write_text(text)
    report.plot_agent(body, folder / "agent.png")
    typer.echo(text)
    typer.echo(f"written to {folder}")
