"""Helpers every benchmark shares: the local app, corpora, result files and tables."""

from __future__ import annotations

import json
import platform
import random
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from deployments.common.model_source import PROJECT_ROOT

RESULTS_DIR = PROJECT_ROOT / "ops" / "results"

_WORDS = (
    "model serving latency request token batch replica cluster cache prefix query document "
    "embedding vector search ranking audio speech transcript pipeline throughput memory gpu "
    "cpu kernel scheduler queue timeout deploy rollout recipe alias metric trace span error "
    "customer invoice payment order shipping product review support ticket account billing "
    "weather city river mountain forest ocean animal music movie book history science sport"
).split()


def sentences(n: int, min_words: int = 6, max_words: int = 40, seed: int = 0) -> list[str]:
    """Deterministic sentences of varied length (a stand-in for short RAG chunks and queries)."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        words = rng.choices(_WORDS, k=rng.randint(min_words, max_words))
        out.append(" ".join(words).capitalize() + ".")
    return out


def environment() -> dict[str, Any]:
    import os

    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=PROJECT_ROOT
    ).stdout.strip()
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "commit": commit,
    }


def write_result(name: str, result: dict[str, Any], table: str) -> Path:
    folder = RESULTS_DIR / name
    folder.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = folder / f"{stamp}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    (folder / "latest.md").write_text(table + "\n")
    return path


def markdown_table(headers: list[str], rows: list[list[Any]]) -> str:
    def cell(v: Any) -> str:
        return f"{v:,.2f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)
