"""Speech-to-text throughput: over HTTP vs in-process, GPU vs its CPU fallback, long files.

    python -m ops.bench.stt [--url URL | --config RENDERED.yaml] [--recipe REF]
        [--concurrency 1 8 32] [--rounds 3] [--cpu-compare] [--long-minutes 10]
    python -m ops.bench.stt --matrix     # WER and real-time factor per model size (stt_matrix)

Clips are espeak-ng speech (the eight sentences of ops.speech, 3-6 s each), or the WAVs in
`--clips DIR` (a GPU host has no espeak-ng). At each concurrency c, rounds alternate
in-process, HTTP, in-process, HTTP, ... after one warm-up of each; a round sends
max(4c, clips) transcriptions with c callers. In-process runs the recipe's engine (same model,
device, compute type, workers and threads; decode included, as the replica decodes) while the
app is idle. `--cpu-compare` adds in-process rounds of the recipe's CPU fallback (int8, same
workers/threads); `--long-minutes` transcribes one long file made of the clips with the
sequential decoder and with the batched pipeline (faster-whisper's BatchedInferencePipeline).
Reports audio seconds transcribed per second (higher is better): median and min-max over
rounds, every round kept. Writes results/<name>/<time>.json and latest.md.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ops.bench.common import app_under_test, markdown_table, write_result
from recipes.loader import load_recipe

RECIPE = "stt-whisper-tiny-cpu@1"
Clip = tuple[bytes, float]


def load_clips(folder: Path | None) -> list[Clip]:
    from ops.speech import clips as speech_clips
    from ops.speech import wav_seconds

    datas = [p.read_bytes() for p in sorted(folder.glob("*.wav"))] if folder else speech_clips()
    return [(d, wav_seconds(d)) for d in datas]


def work_for(clips: list[Clip], concurrency: int) -> list[Clip]:
    n = max(4 * concurrency, len(clips))
    return [clips[i % len(clips)] for i in range(n)]


class InProcess:
    """The recipe's engine in this process, called as the replica calls it (decode included)."""

    def __init__(self, recipe_ref: str, device: str | None = None):
        from deployments.stt.engine import WhisperEngine

        recipe = load_recipe(recipe_ref)
        engine_config = recipe.engine
        if device == "cpu":  # the recipe's CPU fallback: int8, same workers and threads
            engine_config = engine_config.model_copy(
                update={"device": "cpu", "compute_type": "int8"}
            )
        self.engine = WhisperEngine(recipe.model.source.resolve(), engine_config)
        # As in the replica: at most decode_workers decodes and num_workers transcriptions at
        # once, whatever the number of callers.
        self._decoding = threading.Semaphore(engine_config.decode_workers)
        self._working = threading.Semaphore(engine_config.num_workers)

    def one(self, data: bytes) -> None:
        from deployments.contract import TranscriptionOptions

        with self._decoding:
            audio = self.engine.decode(data)
        with self._working:
            self.engine.transcribe(audio, TranscriptionOptions())

    def rate(self, work: list[Clip], concurrency: int) -> dict[str, float]:
        latencies: list[float] = []

        def timed(data: bytes) -> None:
            t0 = time.perf_counter()
            self.one(data)
            latencies.append(time.perf_counter() - t0)

        start = time.perf_counter()
        with ThreadPoolExecutor(concurrency) as pool:
            list(pool.map(timed, [d for d, _ in work]))
        elapsed = time.perf_counter() - start
        return {
            "audio_s_per_s": sum(s for _, s in work) / elapsed,
            "p50_ms": 1000 * statistics.median(latencies),
            "requests": len(work),
            "errors": 0,
        }


async def http_rate(url: str, model: str, work: list[Clip], concurrency: int) -> dict[str, float]:
    import aiohttp

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

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        start = time.perf_counter()
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
    return {
        "audio_s_per_s": sum(s for _, s in work) / elapsed,
        "p50_ms": 1000 * statistics.median(latencies),
        "requests": len(work),
        "errors": errors,
    }


def app_checks(url: str, model: str, clip: bytes) -> dict[str, Any]:
    """What the app says about where speech runs (/v1/models, the runtime metric), and one
    streamed transcription (time to the first delta event, events seen)."""
    import httpx

    out: dict[str, Any] = {}
    with httpx.Client(base_url=url, timeout=60) as client:
        cards = client.get("/v1/models").json()["data"]
        out["models_runtime"] = {c["id"]: c.get("runtime") for c in cards if c.get("runtime")}
        metrics = client.get("/metrics").text
        out["runtime_metric"] = [m for m in metrics.splitlines() if "stt_runtime_info{" in m]
        t0 = time.perf_counter()
        events, first = [], None
        with client.stream(
            "POST",
            "/v1/audio/transcriptions",
            data={"model": model, "stream": "true"},
            files={"file": ("clip.wav", clip)},
        ) as r:
            for line in r.iter_lines():
                if line.startswith("data: "):
                    first = first or time.perf_counter() - t0
                    events.append(line[6:])
        out["stream"] = {
            "first_event_s": first,
            "total_s": time.perf_counter() - t0,
            "events": events,
        }
    print(f"app checks: {out}", flush=True)
    return out


def _summary(rounds: list[dict]) -> dict[str, float]:
    rates = [r["audio_s_per_s"] for r in rounds]
    return {"median": statistics.median(rates), "min": min(rates), "max": max(rates)}


def throughput(
    url: str,
    recipe_ref: str,
    clips: list[Clip],
    concurrencies: list[int],
    rounds: int,
    cpu_compare: bool,
) -> dict[str, Any]:
    model = load_recipe(recipe_ref).model.name
    local = InProcess(recipe_ref)
    cpu = InProcess(recipe_ref, device="cpu") if cpu_compare else None
    runtime = local.engine.runtime().as_dict()
    print(f"in-process engine runs on: {runtime}", flush=True)
    points, rows = [], []
    for c in concurrencies:
        work = work_for(clips, c)
        local.rate(work[: max(c, 4)], c)  # warm-ups at this concurrency
        asyncio.run(http_rate(url, model, work[: max(c, 4)], c))
        if cpu:
            cpu.rate(work[: max(c, 4)], c)
        point: dict[str, Any] = {"concurrency": c, "in_process": [], "http": [], "cpu": []}
        for r in range(rounds):
            point["in_process"].append(local.rate(work, c))
            point["http"].append(asyncio.run(http_rate(url, model, work, c)))
            if cpu:
                point["cpu"].append(cpu.rate(work, c))
            print(
                f"c={c} round {r}: in-process {point['in_process'][-1]['audio_s_per_s']:.1f} "
                f"http {point['http'][-1]['audio_s_per_s']:.1f} audio-s/s",
                flush=True,
            )
        http, inproc = _summary(point["http"]), _summary(point["in_process"])
        ratios = [
            h["audio_s_per_s"] / i["audio_s_per_s"]
            for h, i in zip(point["http"], point["in_process"], strict=True)
        ]
        point.update(
            http_summary=http,
            in_process_summary=inproc,
            ratio_median=statistics.median(ratios),
            ratio_min=min(ratios),
            ratio_max=max(ratios),
        )
        row = [
            c,
            http["median"],
            f"{http['min']:.1f}-{http['max']:.1f}",
            inproc["median"],
            f"{inproc['min']:.1f}-{inproc['max']:.1f}",
            point["ratio_median"],
            f"{min(ratios):.2f}-{max(ratios):.2f}",
            point["http"][0]["p50_ms"],
            sum(h["errors"] for h in point["http"]),
        ]
        if cpu:
            point["cpu_summary"] = _summary(point["cpu"])
            row.insert(5, point["cpu_summary"]["median"])
        points.append(point)
        rows.append(row)
    headers = [
        "c",
        "HTTP audio-s/s",
        "HTTP min-max",
        "in-process audio-s/s",
        "in-proc min-max",
        "HTTP/in-process",
        "ratio min-max",
        "HTTP p50 ms (round 1)",
        "errors",
    ]
    if cpu_compare:
        headers.insert(5, "CPU fallback in-process audio-s/s")
    try:
        checks = app_checks(url, model, max(clips, key=lambda c: c[1])[0])
    except Exception as e:  # a failed check must not lose the measured rounds
        checks = {"error": repr(e)}
    return {
        "recipe": recipe_ref,
        "runtime": runtime,
        "app_checks": checks,
        "cpu_runtime": cpu.engine.runtime().as_dict() if cpu else None,
        "clips": len(clips),
        "rounds": rounds,
        "points": points,
        "table": markdown_table(headers, rows),
    }


def run(url: str, concurrencies: list[int], rounds: int) -> dict[str, Any]:
    """The embedded default's speech pool over HTTP vs in-process (`make bench`)."""
    return throughput(url, RECIPE, load_clips(None), concurrencies, rounds, cpu_compare=False)


def long_file(recipe_ref: str, clips: list[Clip], minutes: float, cpu: bool) -> dict[str, Any]:
    """One long file (the clips over and over, 1 s of silence between): sequential decoder vs
    the batched pipeline, on the recipe's device (and its CPU fallback with `cpu`)."""
    import numpy as np

    from deployments.contract import TranscriptionOptions
    from deployments.stt.decode import SAMPLE_RATE

    out: dict[str, Any] = {"minutes": minutes, "runs": []}
    for device in ["recipe"] + (["cpu"] if cpu else []):
        local = InProcess(recipe_ref, device=None if device == "recipe" else "cpu")
        engine = local.engine
        pieces = [engine.decode(d) for d, _ in clips]
        gap = np.zeros(SAMPLE_RATE, dtype=np.float32)
        target = int(minutes * 60 * SAMPLE_RATE)
        parts, n, i = [], 0, 0
        while n < target:
            parts += [pieces[i % len(pieces)], gap]
            n += pieces[i % len(pieces)].size + gap.size
            i += 1
        audio = np.concatenate(parts)[:target]
        local.one(clips[0][0])  # warm-up
        seconds = audio.size / SAMPLE_RATE
        options = TranscriptionOptions()
        for mode in ("sequential", "batched"):
            t0 = time.perf_counter()
            if mode == "sequential":
                segments, _ = engine.model.transcribe(
                    audio, beam_size=engine.config.beam_size, language="en"
                )
            else:
                segments, _ = engine.pipeline.transcribe(
                    audio,
                    batch_size=engine.config.pipeline_batch_size,
                    beam_size=engine.config.beam_size,
                    language="en",
                )
            words = sum(len(s.text.split()) for s in segments)
            elapsed = time.perf_counter() - t0
            run = {
                "device": engine.device,
                "compute_type": engine.compute_type,
                "mode": mode,
                "audio_s": seconds,
                "elapsed_s": elapsed,
                "audio_s_per_s": seconds / elapsed,
                "words": words,
            }
            print(f"long file {run}", flush=True)
            out["runs"].append(run)
        del options
    out["table"] = markdown_table(
        ["device", "compute", "decoder", "audio s", "elapsed s", "audio-s/s", "words"],
        [
            [
                r["device"],
                r["compute_type"],
                r["mode"],
                r["audio_s"],
                r["elapsed_s"],
                r["audio_s_per_s"],
                r["words"],
            ]
            for r in out["runs"]
        ],
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=None, help="a running app; default: start one")
    parser.add_argument("--config", type=Path, default=None, help="rendered config to start")
    parser.add_argument("--port", type=int, default=8022)
    parser.add_argument("--recipe", default=RECIPE)
    parser.add_argument("--concurrency", type=int, nargs="*", default=[1, 4, 8])
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per point")
    parser.add_argument("--clips", type=Path, default=None, help="folder of WAV clips")
    parser.add_argument("--cpu-compare", action="store_true")
    parser.add_argument("--long-minutes", type=float, default=0)
    parser.add_argument("--name", default="stt", help="results/<name>/")
    parser.add_argument("--matrix", action="store_true", help="model-size matrix (stt_matrix)")
    opts, rest = parser.parse_known_args()
    if opts.matrix:
        from ops.bench import stt_matrix

        stt_matrix.main([*rest, "--rounds", str(opts.rounds)])
        return
    clips = load_clips(opts.clips)
    result: dict[str, Any] = {}
    if opts.long_minutes:
        result["long_file"] = long_file(opts.recipe, clips, opts.long_minutes, opts.cpu_compare)
    if opts.concurrency:
        if opts.config:
            from app.launcher import running_app

            context = running_app(opts.config, opts.port, log=print)
        else:
            context = app_under_test(opts.url, opts.port)
        with context as url:
            result.update(
                throughput(url, opts.recipe, clips, opts.concurrency, opts.rounds, opts.cpu_compare)
            )
    result["table"] = "\n\n".join(
        t for t in (result.get("table"), result.get("long_file", {}).get("table")) if t
    )
    path = write_result(opts.name, result)
    print(result["table"])
    print(f"\nwritten: {path}")


if __name__ == "__main__":
    main()
