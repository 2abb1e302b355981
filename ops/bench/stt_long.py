"""Peak memory of a long file: decode and transcription of 30-60 minutes of speech.

    python -m ops.bench.stt_long [--minutes 30] [--recipe stt-whisper-tiny-cpu@1]

The file is the eight espeak-ng sentences over and over (1 s of silence between), encoded as
24 kbit/s Opus in Ogg (about 5 MB for 30 minutes: under the 25 MB upload limit). Each step runs
in a fresh process and reports its peak RSS (ru_maxrss) and the RSS before it starts:
- `fw-decode`: faster-whisper's own decode_audio (what the pool used before: frames collected,
  joined, then converted to float32);
- `decode`: deployments.stt.decode (limits first, frames resampled into one buffer sized from
  the header);
- `transcribe`: the recipe's engine (max_audio_s raised to fit the file) decoding and
  transcribing it with the batched pipeline, as a replica does.
Writes results/stt-long/<time>.json and latest.md.
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ops.bench.common import markdown_table, write_result

RECIPE = "stt-whisper-tiny-cpu@1"


def make_file(minutes: float, path: Path) -> Path:
    import av
    import numpy as np

    from deployments.stt.decode import SAMPLE_RATE, DecodeLimits, decode
    from ops.speech import clips

    pieces = [decode(c, DecodeLimits(60)) for c in clips()]
    gap = np.zeros(SAMPLE_RATE, dtype=np.float32)
    target, written, i = int(minutes * 60 * SAMPLE_RATE), 0, 0
    out_buf = io.BytesIO()
    with av.open(out_buf, "w", format="ogg") as out:
        stream = out.add_stream("libopus", rate=48000)
        stream.layout = "mono"
        stream.bit_rate = 24000
        resampler = av.AudioResampler(format=stream.format, layout="mono", rate=48000)
        while written < target:
            chunk = np.concatenate([pieces[i % len(pieces)], gap])[: target - written]
            i += 1
            written += chunk.size
            frame = av.AudioFrame.from_ndarray(
                (chunk * 32767).astype(np.int16)[None, :], format="s16", layout="mono"
            )
            frame.sample_rate = SAMPLE_RATE
            for f in resampler.resample(frame):
                for packet in stream.encode(f):
                    out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    path.write_bytes(out_buf.getvalue())
    return path


def step(name: str, path: str, recipe: str, minutes: float) -> dict[str, Any]:
    """One measured step (run in a child process)."""
    import resource

    def rss_mib() -> float:
        with open("/proc/self/status") as f:
            line = next(x for x in f if x.startswith("VmRSS:"))
        return int(line.split()[1]) / 1024

    import av  # noqa: F401  (both decoders' libraries loaded before "before" is taken)
    import faster_whisper  # noqa: F401

    data = Path(path).read_bytes()
    out: dict[str, Any] = {"step": name, "file_mib": len(data) / 2**20}
    started = time.perf_counter()
    if name == "fw-decode":
        from faster_whisper import decode_audio

        out["rss_before_mib"] = rss_mib()
        audio = decode_audio(io.BytesIO(data), sampling_rate=16000)
        out["samples"] = int(audio.size)
    elif name == "decode":
        from deployments.stt.decode import DecodeLimits, decode

        out["rss_before_mib"] = rss_mib()
        audio = decode(data, DecodeLimits(max_seconds=minutes * 60 + 60))
        out["samples"] = int(audio.size)
    else:
        from deployments.contract import TranscriptionOptions
        from deployments.stt.engine import WhisperEngine
        from recipes.loader import load_recipe

        r = load_recipe(recipe)
        config = r.engine.model_copy(update={"max_audio_s": minutes * 60 + 60})
        engine = WhisperEngine(r.model.source.resolve(), config)
        out["rss_before_mib"] = rss_mib()
        started = time.perf_counter()
        audio = engine.decode(data)
        transcript = engine.transcribe(audio, TranscriptionOptions())
        out["samples"] = int(audio.size)
        out["words"] = len(transcript.text.split())
        out["segments"] = len(transcript.segments)
    out["elapsed_s"] = time.perf_counter() - started
    out["audio_mib_float32"] = out["samples"] * 4 / 2**20
    out["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--recipe", default=RECIPE)
    parser.add_argument("--steps", nargs="+", default=["fw-decode", "decode", "transcribe"])
    parser.add_argument("--child", nargs=2, metavar=("STEP", "FILE"), help=argparse.SUPPRESS)
    opts = parser.parse_args()
    if opts.child:
        print("STEP " + json.dumps(step(*opts.child, opts.recipe, opts.minutes)), flush=True)
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = make_file(opts.minutes, Path(tmp) / "long.ogg")
        runs = []
        for name in opts.steps:
            child = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "ops.bench.stt_long",
                    "--minutes",
                    str(opts.minutes),
                    "--recipe",
                    opts.recipe,
                    "--child",
                    name,
                    str(path),
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            line = next(x for x in child.stdout.splitlines() if x.startswith("STEP "))
            runs.append(json.loads(line[5:]))
            print(runs[-1], flush=True)
    rows = [
        [
            r["step"],
            r["file_mib"],
            r["samples"] / 16000 / 60,
            r["audio_mib_float32"],
            r["rss_before_mib"],
            r["peak_rss_mib"],
            r["peak_rss_mib"] - r["rss_before_mib"],
            r["elapsed_s"],
            r.get("words", ""),
        ]
        for r in runs
    ]
    table = markdown_table(
        [
            "step",
            "file MiB",
            "audio min",
            "audio MiB (f32)",
            "RSS before MiB",
            "peak RSS MiB",
            "peak - before MiB",
            "elapsed s",
            "words",
        ],
        rows,
    )
    result = {"minutes": opts.minutes, "recipe": opts.recipe, "runs": runs, "table": table}
    path = write_result("stt-long", result)
    print(table)
    print(f"\nwritten: {path}")


if __name__ == "__main__":
    main()
