"""`python -m ops.recipes`: validate, render, vram, diff and decision records of recipes."""

from __future__ import annotations

import sys

import typer

from app.recipes.loader import RecipeError, all_set_ids
from ops.recipes.render import render_set_id

app = typer.Typer(help=__doc__, no_args_is_help=True, add_completion=False)


@app.command()
def render(
    set_ids: list[str] = typer.Argument(None, help="Recipe set ids (default: all)"),
    all_sets: bool = typer.Option(False, "--all", help="Render every recipe set"),
    check: bool = typer.Option(False, help="Fail if a rendered file differs; write nothing"),
) -> None:
    """Render recipe sets into Ray Serve config files."""
    ids = all_set_ids() if all_sets or not set_ids else set_ids
    stale = []
    try:
        for set_id in ids:
            path, text = render_set_id(set_id)
            if check:
                if not path.exists() or path.read_text() != text:
                    stale.append(str(path))
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            typer.echo(f"rendered {set_id} -> {path}")
    except RecipeError as e:
        typer.echo(str(e), err=True)
        sys.exit(1)
    if stale:
        typer.echo("out of sync with their recipes (run `make recipes-render`):", err=True)
        for p in stale:
            typer.echo(f"  {p}", err=True)
        sys.exit(1)
    if check:
        typer.echo(f"{len(ids)} rendered config(s) in sync")
