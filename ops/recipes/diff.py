"""What changed between two recipe versions, field by field."""

from __future__ import annotations

from typing import Any

from recipes.schema import Recipe


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out |= flatten(item, f"{prefix}.{key}" if prefix else str(key))
        return out
    return {prefix: value}


def diff(old: Recipe, new: Recipe) -> list[str]:
    a = flatten(old.model_dump(mode="json"))
    b = flatten(new.model_dump(mode="json"))
    lines = [f"{old.ref} -> {new.ref}"]
    for path in sorted(a.keys() | b.keys()):
        if path not in b:
            lines.append(f"  - {path}: {a[path]!r}")
        elif path not in a:
            lines.append(f"  + {path}: {b[path]!r}")
        elif a[path] != b[path]:
            lines.append(f"  ~ {path}: {a[path]!r} -> {b[path]!r}")
    if len(lines) == 1:
        lines.append("  (no changes)")
    return lines
