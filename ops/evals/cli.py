"""`python -m ops.evals`: evals run through the platform's own API.

longctx: the long-context eval of one model (ops/evals/longctx.py): passkey and multi-fact
accuracy, TTFT, latency, KV-cache usage, tokens and cost per accepted outcome, per context
length. Results: results/longctx-<model>-<time>/ (JSON, table, plot).
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import httpx
import typer

from ops.evals import longctx

app = typer.Typer(help=__doc__, no_args_is_help=True, add_completion=False)


@app.callback()
def main() -> None:
    """Evals through the platform's API."""


def _probe(url: str, model: str, headers: dict[str, str]) -> tuple[str, str]:
    """The pool and recipe that answer this model (from a one-token request's headers)."""
    body = {"model": model, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1}
    r = httpx.post(f"{url}/v1/chat/completions", json=body, headers=headers, timeout=120)
    r.raise_for_status()
    return r.headers["x-pool"], r.headers["x-recipe"]


@app.command("longctx")
def longctx_command(
    model: str = typer.Option(..., help="Model id or alias, as clients send it"),
    url: str = typer.Option("http://127.0.0.1:8000", help="The platform's base URL"),
    profile: str | None = typer.Option(None, help="x-workload-profile header (e.g. long_context)"),
    lengths: str = typer.Option("512,1024,2048,4096,8192", help="Context lengths, tokens"),
    depths: str = typer.Option("0.1,0.5,0.9", help="Passkey depths (share of the filler before)"),
    trials: int = typer.Option(
        2, min=1, help="Passkey items per (length, depth); facts per length"
    ),
    max_tokens: int = typer.Option(24, min=1),
    gate: float = typer.Option(0.8, help="Passkey accuracy a length must reach (working context)"),
    seed: int = 0,
    budget_s: float | None = typer.Option(
        None, help="Send no new request after this long (lengths run shortest first)"
    ),
    out: Path | None = typer.Option(None, help="Results folder (default results/longctx-...)"),
) -> None:
    from app.context import chat_token_ids
    from ops.recipes.vram import estimate
    from recipes.loader import load_recipe

    headers = {"x-workload-profile": profile} if profile else {}
    pool, ref = _probe(url, model, headers)
    recipe = load_recipe(ref.split("+", 1)[0])
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(recipe.model.source.resolve()))
    template_file = recipe.engine.chat_template_file()  # type: ignore[union-attr]
    template = template_file.read_text() if template_file else None
    # The longest prompt leaves room for the answer within the engine's max_model_len.
    ceiling = recipe.engine.max_model_len - max_tokens  # type: ignore[union-attr]
    wanted = [int(x) for x in lengths.split(",")]
    sized = [min(n, ceiling) for n in wanted]
    items = longctx.build_items(
        sized,
        [float(d) for d in depths.split(",")],
        trials,
        seed,
        lambda messages: len(chat_token_ids(tokenizer, messages, None, template)),
    )
    for item in items:  # label by the nominal length asked for
        item.length = wanted[sized.index(item.length)]
    est = estimate(recipe)
    typer.echo(f"{len(items)} requests to {model} (pool {pool}, recipe {ref})")

    started = time.time()

    async def run_all() -> list[longctx.Outcome]:
        outcomes = []
        async with httpx.AsyncClient(base_url=url, timeout=900) as client:
            for i, item in enumerate(items):
                if budget_s is not None and time.time() - started > budget_s:
                    typer.echo(f"budget of {budget_s:g}s spent: {len(items) - i} requests not sent")
                    break
                o = await longctx.run_item(client, model, item, max_tokens, headers, pool)
                typer.echo(
                    f"[{i + 1}/{len(items)}] {o.kind} len={o.length} depth={o.depth} "
                    f"prompt={o.prompt_tokens} ok={o.correct} ttft={o.ttft_s} "
                    f"reply={o.reply[:60]!r} {o.error or ''}"
                )
                outcomes.append(o)
        return outcomes

    outcomes = asyncio.run(run_all())
    summary = longctx.summarize(
        outcomes, recipe.cost.usd_per_hour, est.kv_bytes_per_token if est else None, gate
    )
    folder = out or longctx.RESULTS / f"longctx-{model}-{time.strftime('%Y%m%d-%H%M%S')}"
    folder.mkdir(parents=True, exist_ok=True)
    record = {
        "model": model,
        "pool": pool,
        "recipe": ref,
        "url": url,
        "profile": profile,
        "max_model_len": recipe.engine.max_model_len,  # type: ignore[union-attr]
        "model_max_context": recipe.model.max_context,
        "lengths": wanted,
        "prompt_tokens_asked": sized,
        "depths": depths,
        "trials": trials,
        "requests_planned": len(items),
        "budget_s": budget_s,
        "max_tokens": max_tokens,
        "seed": seed,
        "usd_per_hour": recipe.cost.usd_per_hour,
        "started": started,
        "duration_s": time.time() - started,
        "summary": summary,
        "outcomes": longctx.outcome_dicts(outcomes),
    }
    (folder / "longctx.json").write_text(json.dumps(record, indent=1))
    text = longctx.table(summary)
    (folder / "longctx.md").write_text(f"# Long-context eval: {model} ({ref})\n\n{text}")
    longctx.plot(summary, folder / "longctx.png", f"{model} via {pool}")
    typer.echo(text)
    typer.echo(f"wrote {folder}")


@app.command("longctx-merge")
def longctx_merge(
    runs: list[Path] = typer.Argument(..., help="longctx.json files of one model and recipe"),
    out: Path = typer.Option(..., help="Results folder of the merged eval"),
    gate: float = typer.Option(0.8),
) -> None:
    """One eval from several runs (e.g. the longest lengths run in a quiet window of their
    own): every request of every run, summarized again; the runs' files stay as they are."""
    from ops.recipes.vram import estimate
    from recipes.loader import load_recipe

    records = [json.loads(p.read_text()) for p in runs]
    recipes = {r["recipe"] for r in records}
    if len(recipes) != 1:
        raise typer.BadParameter(f"runs of different recipes: {sorted(recipes)}")
    first = records[0]
    recipe = load_recipe(first["recipe"].split("+", 1)[0])
    est = estimate(recipe)
    outcomes = [longctx.Outcome(**o) for r in records for o in r["outcomes"]]
    summary = longctx.summarize(
        outcomes, first["usd_per_hour"], est.kv_bytes_per_token if est else None, gate
    )
    out.mkdir(parents=True, exist_ok=True)
    merged = {
        **{k: v for k, v in first.items() if k not in ("outcomes", "summary")},
        "merged_from": [str(p) for p in runs],
        "lengths": sorted({o.length for o in outcomes}),
        "summary": summary,
        "outcomes": longctx.outcome_dicts(outcomes),
    }
    (out / "longctx.json").write_text(json.dumps(merged, indent=1))
    text = longctx.table(summary)
    sources = ", ".join(str(p) for p in runs)
    title = f"# Long-context eval: {first['model']} ({first['recipe']})"
    (out / "longctx.md").write_text(f"{title}\n\nMerged from {sources}.\n\n{text}")
    longctx.plot(summary, out / "longctx.png", f"{first['model']} via {first['pool']}")
    typer.echo(text)
