"""Whisper size and compute type as a recipe decision: WER and real-time factor per recipe.

    python -m ops.bench.stt --matrix [--recipes REF ...] [--rounds 3]

The test set is fixed and generated here: the first six sentences of ops.speech (six, so the
whole matrix fits a 10-minute quiet window on 2 cores) spoken by espeak-ng in three
conditions (en-us at 150 words/min; en-gb-x-rp at 190 words/min; en-us at 150 words/min with
white noise added at 20 dB SNR, numpy seed 0), plus a German and a Spanish
sentence for language detection on the multilingual models. Each recipe's engine (its model,
device, compute type and threads) transcribes every clip one at a time in this process; rounds
go recipe by recipe, round after round (interleaved), after a warm-up clip each. WER is
computed on round 1 (decoding is deterministic; later rounds are checked to give the same
text) over all English clips together; RTF = compute seconds / audio seconds (lower is
faster; median and min-max over rounds). Writes results/stt-matrix/<time>.json, latest.md
and <time>.png (WER against RTF).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from ops.bench.common import RESULTS_DIR, markdown_table, write_result
from ops.quality import word_error_rate
from ops.speech import SENTENCES, require_speech_tools

RECIPES = [
    "stt-whisper-tiny-cpu@1",
    "stt-whisper-tiny-f32-cpu@1",
    "stt-whisper-base-cpu@1",
    "stt-whisper-base-f32-cpu@1",
]
CONDITIONS = [  # name, espeak-ng voice, words per minute, SNR in dB (None: clean)
    ("en-us-150", "en-us", 150, None),
    ("en-gb-rp-190", "en-gb-x-rp", 190, None),
    ("en-us-150-snr20", "en-us", 150, 20.0),
]
FOREIGN = [  # language, espeak-ng voice, text
    ("de", "de", "Der Zug zum Flughafen fährt alle zwanzig Minuten vom Hauptbahnhof ab."),
    ("es", "es", "El tren al aeropuerto sale cada veinte minutos de la estación central."),
]
NOISE_SEED = 0
MATRIX_SENTENCES = SENTENCES[:6]


def _speak(text: str, voice: str, wpm: int, folder: Path, name: str) -> np.ndarray:
    import subprocess

    from deployments.stt.decode import DecodeLimits, decode

    raw = folder / f"{name}.raw.wav"
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(wpm), "-w", str(raw), text], check=True)
    return decode(raw.read_bytes(), DecodeLimits(max_seconds=600))


def _with_noise(audio: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    power = float(np.mean(audio**2))
    noise = rng.normal(0.0, np.sqrt(power / 10 ** (snr_db / 10)), audio.size)
    return np.clip(audio + noise, -1.0, 1.0).astype(np.float32)


def test_set() -> list[dict[str, Any]]:
    """Every clip: condition, language, reference text and 16 kHz float32 audio."""
    require_speech_tools()
    rng = np.random.default_rng(NOISE_SEED)
    clips = []
    with tempfile.TemporaryDirectory() as tmp:
        for condition, voice, wpm, snr in CONDITIONS:
            for i, text in enumerate(MATRIX_SENTENCES):
                audio = _speak(text, voice, wpm, Path(tmp), f"{condition}-{i}")
                if snr is not None:
                    audio = _with_noise(audio, snr, rng)
                clips.append(
                    {"condition": condition, "language": "en", "text": text, "audio": audio}
                )
        for language, voice, text in FOREIGN:
            audio = _speak(text, voice, 150, Path(tmp), f"foreign-{language}")
            clips.append(
                {"condition": f"{language}-150", "language": language, "text": text, "audio": audio}
            )
    return clips


def _engine(ref: str):
    from deployments.stt.engine import WhisperEngine
    from recipes.loader import load_recipe

    recipe = load_recipe(ref)
    return WhisperEngine(recipe.model.source.resolve(), recipe.engine)


def run(refs: list[str], rounds: int) -> dict[str, Any]:
    from deployments.contract import TranscriptionOptions
    from deployments.stt.decode import SAMPLE_RATE

    clips = test_set()
    english = [c for c in clips if c["language"] == "en"]
    audio_s = sum(c["audio"].size for c in english) / SAMPLE_RATE
    engines = {}
    for ref in refs:
        started = time.perf_counter()
        engines[ref] = _engine(ref)
        engines[ref].transcribe(english[0]["audio"], TranscriptionOptions())  # warm-up
        print(f"{ref}: loaded and warmed in {time.perf_counter() - started:.1f}s", flush=True)
    records: dict[str, list[dict]] = {ref: [] for ref in refs}
    for r in range(rounds):
        for ref, engine in engines.items():
            texts, started = [], time.perf_counter()
            for clip in english:
                texts.append(engine.transcribe(clip["audio"], TranscriptionOptions()).text)
            elapsed = time.perf_counter() - started
            records[ref].append(
                {"round": r, "compute_s": elapsed, "rtf": elapsed / audio_s, "texts": texts}
            )
            print(f"round {r} {ref}: RTF {elapsed / audio_s:.3f}", flush=True)
    rows, models = [], []
    for ref, engine in engines.items():
        first = records[ref][0]["texts"]
        per_condition = {}
        for condition, *_ in CONDITIONS:
            pairs = [
                (c["text"], t)
                for c, t in zip(english, first, strict=True)
                if c["condition"] == condition
            ]
            per_condition[condition] = _corpus_wer(pairs)
        wer = _corpus_wer([(c["text"], t) for c, t in zip(english, first, strict=True)])
        rtfs = [rec["rtf"] for rec in records[ref]]
        foreign = []
        if engine.multilingual:
            for clip in (c for c in clips if c["language"] != "en"):
                result = engine.transcribe(clip["audio"], TranscriptionOptions())
                foreign.append(
                    {
                        "language": clip["language"],
                        "detected": result.language,
                        "probability": result.language_probability,
                        "text": result.text,
                        "wer": word_error_rate(clip["text"], result.text),
                    }
                )
        runtime = engine.runtime()
        model = {
            "recipe": ref,
            "compute_type": runtime.compute_type,
            "cpu_threads": engine.config.cpu_threads,
            "beam_size": engine.config.beam_size,
            "multilingual": engine.multilingual,
            "wer": wer,
            "wer_by_condition": per_condition,
            "rtf_median": statistics.median(rtfs),
            "rtf_min": min(rtfs),
            "rtf_max": max(rtfs),
            "same_text_every_round": all(rec["texts"] == first for rec in records[ref]),
            "foreign": foreign,
            "rounds": records[ref],
        }
        models.append(model)
        detected = (
            ", ".join(
                f"{f['language']}->{f['detected']} ({f['probability']:.2f}), WER {f['wer']:.2f}"
                for f in foreign
            )
            or "English only"
        )
        rows.append(
            [
                ref,
                runtime.compute_type,
                wer,
                *per_condition.values(),
                statistics.median(rtfs),
                f"{min(rtfs):.3f}-{max(rtfs):.3f}",
                detected,
            ]
        )
    headers = [
        "recipe",
        "compute",
        "WER (all)",
        *(f"WER {c[0]}" for c in CONDITIONS),
        "RTF median",
        "RTF min-max",
        "non-English (detected, prob, WER)",
    ]
    return {
        "test_set": {
            "conditions": [
                {"name": n, "voice": v, "words_per_minute": w, "snr_db": s}
                for n, v, w, s in CONDITIONS
            ],
            "sentences": MATRIX_SENTENCES,
            "foreign": FOREIGN,
            "english_audio_s": audio_s,
            "noise": f"white Gaussian, numpy default_rng({NOISE_SEED})",
        },
        "rounds": rounds,
        "models": models,
        "table": markdown_table(headers, rows),
    }


def _corpus_wer(pairs: list[tuple[str, str]]) -> float:
    """Errors over all reference words (not a mean of per-clip rates)."""
    from ops.quality import normalize_words

    words = sum(len(normalize_words(ref)) for ref, _ in pairs)
    errors = sum(word_error_rate(ref, hyp) * len(normalize_words(ref)) for ref, hyp in pairs)
    return errors / words if words else 0.0


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for m in result["models"]:
        ax.errorbar(
            m["rtf_median"],
            m["wer"],
            xerr=[[m["rtf_median"] - m["rtf_min"]], [m["rtf_max"] - m["rtf_median"]]],
            fmt="o",
            capsize=3,
        )
        ax.annotate(
            m["recipe"].split("@")[0].removeprefix("stt-whisper-"),
            (m["rtf_median"], m["wer"]),
            textcoords="offset points",
            xytext=(5, 5),
        )
    ax.set_xlabel("real-time factor (compute s / audio s, lower is faster)")
    ax.set_ylabel("word error rate (espeak-ng set)")
    ax.set_title("Whisper on CPU: size and compute type")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m ops.bench.stt --matrix")
    parser.add_argument("--recipes", nargs="+", default=RECIPES)
    parser.add_argument("--rounds", type=int, default=3)
    opts = parser.parse_args(argv)
    result = run(opts.recipes, opts.rounds)
    path = write_result("stt-matrix", result)
    plot(result, path.with_suffix(".png"))
    print(result["table"])
    print(f"\nwritten: {path} and {path.with_suffix('.png')} ({RESULTS_DIR / 'stt-matrix'})")
