"""`python -m ops.recipes`: validate, render, vram, diff and decision records of recipes."""

from __future__ import annotations

import sys

import typer

from ops.recipes.decision import decision_path, render_decision
from ops.recipes.diff import diff as diff_recipes
from ops.recipes.kuberay import (
    DEFAULT_IMAGE,
    LOOPBACK,
    KubeRayError,
    render_kuberay_set_id,
)
from ops.recipes.render import render_set_id
from ops.recipes.validate import validate_all
from ops.recipes.vram import describe, estimate
from recipes.loader import (
    RecipeError,
    all_recipe_refs,
    all_set_ids,
    load_recipe,
    load_set,
    recipe_versions,
    split_ref,
)

app = typer.Typer(help=__doc__, no_args_is_help=True, add_completion=False)


def _fail(message: str) -> None:
    typer.echo(message, err=True)
    sys.exit(1)


def _write_or_check(path, text: str, check: bool, stale: list[str]) -> None:
    """Write a generated file, or with --check only note whether it differs from `text`."""
    if check:
        if not path.exists() or path.read_text() != text:
            stale.append(str(path))
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    typer.echo(f"wrote {path}")


@app.command()
def validate(
    targets: list[str] = typer.Argument(None, help="recipe-id@version or set ids (default: all)"),
) -> None:
    """Check recipes and recipe sets: schema, then the launch rules (GPU fractions, VRAM,
    shared pools, max context, CPU budget, rollback targets)."""
    if targets:
        refs = [t for t in targets if "@" in t]
        sets = [t for t in targets if "@" not in t]
    else:
        refs, sets = all_recipe_refs(), all_set_ids()
    checked, problems = validate_all(sets, refs)
    for problem in problems:
        typer.echo(str(problem), err=True)
    if problems:
        _fail(f"{len(problems)} problem(s) in {len(refs) + len(sets)} target(s)")
    typer.echo(f"ok: {len(checked)} recipe(s) and set(s) valid")


@app.command()
def render(
    set_ids: list[str] = typer.Argument(None, help="Recipe set ids (default: all)"),
    all_sets: bool = typer.Option(False, "--all", help="Render every recipe set"),
    check: bool = typer.Option(False, help="Fail if a rendered file differs; write nothing"),
    kuberay: bool = typer.Option(
        False,
        "--kuberay",
        help="Render KubeRay RayService manifests (serve_configs/kuberay/) instead",
    ),
    image: str = typer.Option(DEFAULT_IMAGE, help="--kuberay: the image with this project"),
) -> None:
    """Render recipe sets into Ray Serve config files (or KubeRay RayService manifests)."""
    ids = all_set_ids() if all_sets or not set_ids else set_ids
    if kuberay and (all_sets or not set_ids):
        # Only sets whose Gateway listens beyond loopback can serve a Kubernetes Service.
        ids = [i for i in ids if load_set(i).gateway.host not in LOOPBACK]
    stale = []
    try:
        for set_id in ids:
            if kuberay:
                _write_or_check(*render_kuberay_set_id(set_id, image), check, stale)
            else:
                _write_or_check(*render_set_id(set_id), check, stale)
    except (RecipeError, KubeRayError) as e:
        _fail(str(e))
    if stale:
        _fail(
            "out of sync with their recipes (run `make recipes-render`):\n  " + "\n  ".join(stale)
        )
    if check:
        typer.echo(f"{len(ids)} rendered config(s) in sync")


@app.command()
def vram(
    ref: str = typer.Argument(..., help="recipe-id@version"),
    sequences: int = typer.Option(None, help="Concurrent sequences of the working set"),
    context: int = typer.Option(None, help="Typical context tokens per sequence"),
) -> None:
    """Device-memory breakdown of an LLM recipe, and the cache budget for a working set."""
    est = estimate(load_recipe(ref))
    if est is None:
        _fail(f"{ref} is not a vLLM recipe with a model.architecture")
    typer.echo(describe(est, sequences, context))


@app.command()
def diff(
    old: str = typer.Argument(..., help="recipe-id@version"),
    new: str = typer.Argument(None, help="recipe-id@version (default: the next version)"),
) -> None:
    """What changed between two recipe versions."""
    if new is None:
        rid, version = split_ref(old)
        later = [v for v in recipe_versions(rid) if v > version]
        if not later:
            _fail(f"{old} has no later version")
        new = f"{rid}@{later[0]}"
    typer.echo("\n".join(diff_recipes(load_recipe(old), load_recipe(new))))


@app.command()
def decision(
    refs: list[str] = typer.Argument(None, help="recipe-id@version (default: newest of each)"),
    check: bool = typer.Option(False, help="Fail if a decision record is out of date"),
) -> None:
    """Write the decision record of each recipe to ops/decisions/<recipe-id>.md."""
    if not refs:
        newest: dict[str, str] = {}
        for ref in all_recipe_refs():
            newest[split_ref(ref)[0]] = ref
        refs = list(newest.values())
    stale = []
    for ref in refs:
        recipe = load_recipe(ref)
        _write_or_check(decision_path(recipe), render_decision(recipe), check, stale)
    if stale:
        _fail("decision records out of date (run `python -m ops.recipes decision`):\n  "
              + "\n  ".join(stale))  # fmt: skip
    if check:
        typer.echo(f"{len(refs)} decision record(s) up to date")
