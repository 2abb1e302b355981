"""Spoken test audio: espeak-ng speaks, sox resamples to 16 kHz mono (benchmarks and tests)."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Please send the quarterly report to the finance team before Friday.",
    "Our platform serves speech, text and embeddings from one cluster of machines.",
    "The train to the airport leaves every twenty minutes from the central station.",
    "Rerankers read the query and the document together to judge how well they match.",
    "A cold start is the time between deploying a model and serving its first request.",
    "We measure time to first token, time per output token and the total latency.",
    "Autoscaling adds replicas when the queue grows and removes them when it is idle.",
]


def require_speech_tools() -> None:
    missing = [tool for tool in ("espeak-ng", "sox") if shutil.which(tool) is None]
    if missing:
        raise RuntimeError(f"{missing} not installed: `make test` installs them")


def speak(text: str, path: Path, words_per_minute: int = 140) -> Path:
    """16 kHz mono 16-bit WAV of `text` spoken by espeak-ng."""
    require_speech_tools()
    raw = path.with_suffix(".raw.wav")
    subprocess.run(["espeak-ng", "-s", str(words_per_minute), "-w", str(raw), text], check=True)
    # -D: no dither. sox dithers with fresh random noise on every run by default, so the same
    # text gave different audio each time (and a transcription test that passed or failed by luck).
    subprocess.run(
        ["sox", "-D", str(raw), "-r", "16000", "-c", "1", "-b", "16", str(path)], check=True
    )
    raw.unlink()
    return path


def wav_seconds(data: bytes) -> float:
    """Duration of a 16 kHz mono 16-bit WAV (44-byte header)."""
    return (len(data) - 44) / 2 / 16000


def clips(sentences: list[str] = SENTENCES) -> list[bytes]:
    with tempfile.TemporaryDirectory() as tmp:
        return [speak(s, Path(tmp) / f"clip{i}.wav").read_bytes() for i, s in enumerate(sentences)]
