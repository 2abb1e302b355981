"""Embeddings throughput over HTTP at several concurrencies vs in-process encode, one run.

    python -m ops.bench.embeddings [--url http://127.0.0.1:8000] [--texts 2048]

Without --url it starts the embedded default app itself (serve_configs/local.yaml). The
in-process baseline is SentenceTransformer.encode(batch_size=64) on the same texts with the
every core of this machine, run while the app is idle. Writes
results/embeddings/<time>.json and latest.md.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import aiohttp

from ops.bench.common import app_under_test, markdown_table, sentences, write_result
from recipes.loader import load_recipe

RECIPE = "embed-minilm-cpu@1"


def in_process_rate(texts: list[str], repeats: int = 3, recipe_ref: str = RECIPE) -> float:
    """Texts per second of the same model called directly, batch 64, with every core of this
    machine (not the replica's thread count: the baseline is the best in-process can do)."""
    import os

    from deployments.embeddings.engine import EmbeddingEngine

    recipe = load_recipe(recipe_ref)
    threads = os.cpu_count() if recipe.engine.device == "cpu" else recipe.engine.num_threads
    config = recipe.engine.model_copy(update={"num_threads": threads, "encode_batch_size": 64})
    engine = EmbeddingEngine(recipe.model.source.resolve(), config)
    engine.encode(texts[:64])  # warm-up
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        engine.encode(texts)
        rates.append(len(texts) / (time.perf_counter() - start))
    return statistics.median(rates)


async def http_rate(
    url: str, model: str, texts: list[str], concurrency: int, per_request: int
) -> dict[str, float]:
    """Texts per second over HTTP with `concurrency` requests in flight."""
    chunks = [texts[i : i + per_request] for i in range(0, len(texts), per_request)]
    queue: asyncio.Queue[list[str]] = asyncio.Queue()
    for c in chunks:
        queue.put_nowait(c)
    latencies: list[float] = []
    errors = 0

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal errors
        while not queue.empty():
            chunk = queue.get_nowait()
            t0 = time.perf_counter()
            async with session.post(
                f"{url}/v1/embeddings",
                json={"model": model, "input": chunk, "encoding_format": "base64"},
            ) as r:
                await r.read()
                if r.status != 200:
                    errors += 1
            latencies.append(time.perf_counter() - t0)

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        # warm-up: one round at this concurrency, not counted
        warm = [
            session.post(f"{url}/v1/embeddings", json={"model": model, "input": c})
            for c in chunks[:concurrency]
        ]
        for w in warm:
            async with w as r:
                await r.read()
        start = time.perf_counter()
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
    latencies.sort()
    return {
        "texts_per_s": len(texts) / elapsed,
        "requests_per_s": len(chunks) / elapsed,
        "p50_ms": 1000 * latencies[len(latencies) // 2],
        "p99_ms": 1000 * latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
        "errors": errors,
    }


def run(
    url: str,
    n_texts: int,
    per_request: list[int],
    concurrencies: list[int],
    recipe_ref: str = RECIPE,
) -> dict:
    texts = sentences(n_texts)
    model = load_recipe(recipe_ref).model.name
    rows, points = [], []
    baseline = in_process_rate(texts, recipe_ref=recipe_ref)
    for size in per_request:
        for c in concurrencies:
            point = asyncio.run(http_rate(url, model, texts, c, size))
            point.update(
                concurrency=c, texts_per_request=size, ratio=point["texts_per_s"] / baseline
            )
            points.append(point)
            rows.append(
                [
                    size,
                    c,
                    point["texts_per_s"],
                    baseline,
                    point["ratio"],
                    point["p50_ms"],
                    point["p99_ms"],
                    point["errors"],
                ]
            )
    table = markdown_table(
        [
            "texts/request",
            "concurrency",
            "HTTP texts/s",
            "in-process texts/s",
            "ratio",
            "p50 ms",
            "p99 ms",
            "errors",
        ],
        rows,
    )
    return {
        "recipe": recipe_ref,
        "texts": n_texts,
        "in_process_texts_per_s": baseline,
        "points": points,
        "table": table,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=None, help="a running app; default: start one")
    parser.add_argument("--port", type=int, default=8021)
    parser.add_argument("--texts", type=int, default=2048)
    parser.add_argument("--per-request", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--recipe", default=RECIPE, help="the embedding recipe served at --url")
    opts = parser.parse_args()
    with app_under_test(opts.url, opts.port) as url:
        result = run(url, opts.texts, opts.per_request, opts.concurrency, opts.recipe)
    path = write_result("embeddings", result)
    print(result["table"])
    print(f"\nwritten: {path}")


if __name__ == "__main__":
    main()
