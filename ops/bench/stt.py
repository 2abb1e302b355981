"""Speech-to-text throughput over HTTP vs in-process faster-whisper, same clips, one run.

    python -m ops.bench.stt [--url http://127.0.0.1:8000] [--concurrency 1 4 8]

Clips are espeak-ng speech (sentences of 3-12 s). The in-process baseline runs the recipe's
engine (same model, compute type, workers and threads) with the same number of concurrent
callers, while the app is idle. Reports audio seconds transcribed per second (higher is
better) and writes results/stt/<time>.json and latest.md.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

import aiohttp

from ops.bench.common import app_under_test, markdown_table, write_result
from ops.speech import clips as speech_clips
from ops.speech import wav_seconds
from recipes.loader import load_recipe

RECIPE = "stt-whisper-tiny-cpu@1"


def in_process_rate(clips: list[tuple[bytes, float]], concurrency: int, rounds: int) -> float:
    from deployments.stt.engine import TranscriptionOptions, WhisperEngine

    recipe = load_recipe(RECIPE)
    engine = WhisperEngine(recipe.model.source.resolve(), recipe.engine)
    audios = [(engine.decode(data), seconds) for data, seconds in clips]
    engine.transcribe(audios[0][0], TranscriptionOptions())  # warm-up
    work = audios * rounds
    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(lambda a: engine.transcribe(a[0], TranscriptionOptions()), work))
    return sum(s for _, s in work) / (time.perf_counter() - start)


async def http_rate(
    url: str, model: str, clips: list[tuple[bytes, float]], concurrency: int, rounds: int
) -> dict[str, float]:
    work = clips * rounds
    queue: asyncio.Queue = asyncio.Queue()
    for item in work:
        queue.put_nowait(item)
    latencies: list[float] = []
    errors = 0

    async def post(session: aiohttp.ClientSession, data: bytes) -> int:
        form = aiohttp.FormData()
        form.add_field("model", model)
        form.add_field("file", data, filename="clip.wav", content_type="audio/wav")
        async with session.post(f"{url}/v1/audio/transcriptions", data=form) as r:
            await r.read()
            return r.status

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal errors
        while not queue.empty():
            data, _ = queue.get_nowait()
            t0 = time.perf_counter()
            if await post(session, data) != 200:
                errors += 1
            latencies.append(time.perf_counter() - t0)

    async with aiohttp.ClientSession() as session:
        await post(session, clips[0][0])  # warm-up
        start = time.perf_counter()
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
    return {
        "audio_s_per_s": sum(s for _, s in work) / elapsed,
        "p50_ms": 1000 * statistics.median(latencies),
        "errors": errors,
    }


def run(url: str, concurrencies: list[int], rounds: int) -> dict:
    model = load_recipe(RECIPE).model.name
    clips = [(data, wav_seconds(data)) for data in speech_clips()]
    points, rows = [], []
    for c in concurrencies:
        baseline = in_process_rate(clips, c, rounds)
        point = asyncio.run(http_rate(url, model, clips, c, rounds))
        point.update(concurrency=c, in_process_audio_s_per_s=baseline)
        point["ratio"] = point["audio_s_per_s"] / baseline
        points.append(point)
        rows.append([c, point["audio_s_per_s"], baseline, point["ratio"], point["p50_ms"],
                     point["errors"]])  # fmt: skip
    table = markdown_table(
        ["concurrency", "HTTP audio-s/s", "in-process audio-s/s", "ratio", "p50 ms", "errors"],
        rows,
    )
    audio = sum(s for _, s in clips)
    return {"recipe": RECIPE, "clips": len(clips), "audio_s_per_round": audio, "rounds": rounds,
            "points": points, "table": table}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=None, help="a running app; default: start one")
    parser.add_argument("--port", type=int, default=8022)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--rounds", type=int, default=2, help="passes over the clips per point")
    opts = parser.parse_args()
    with app_under_test(opts.url, opts.port) as url:
        result = run(url, opts.concurrency, opts.rounds)
    path = write_result("stt", result)
    print(result["table"])
    print(f"\nwritten: {path}")


if __name__ == "__main__":
    main()
