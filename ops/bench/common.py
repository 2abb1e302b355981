"""Helpers every benchmark shares: the local app, corpora, result files and tables."""

from __future__ import annotations

import contextlib
import json
import platform
import random
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from recipes.paths import PROJECT_ROOT, RESULTS_ROOT

RESULTS_DIR = RESULTS_ROOT
LOCAL_CONFIG = PROJECT_ROOT / "serve_configs" / "local.yaml"

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


@contextlib.contextmanager
def app_under_test(url: str | None, port: int) -> Iterator[str]:
    """The app a benchmark measures: `url` when given, else the embedded default started here."""
    if url:
        yield url
        return
    from app.launcher import running_app

    with running_app(LOCAL_CONFIG, port, log=print) as started:
        yield started


def write_result(name: str, result: dict[str, Any]) -> Path:
    """Stamp the environment on a benchmark result and write its JSON and table."""
    result["environment"] = environment()
    folder = RESULTS_DIR / name
    folder.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = folder / f"{stamp}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    (folder / "latest.md").write_text(result["table"] + "\n")
    return path


def markdown_table(headers: list[str], rows: list[list[Any]]) -> str:
    def cell(v: Any) -> str:
        return f"{v:,.2f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)
