"""Test audio: speech from ops.speech, transcoded by PyAV into other containers."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from ops.speech import speak  # noqa: F401  (tests speak through the one helper)

FOX = "the quick brown fox jumps over the lazy dog"
PLATFORM = (
    "Speech recognition turns spoken language into text. This platform serves speech models "
    "next to language models and embedding models. Each request is checked, routed to a pool, "
    "and answered in the shape that the client expects."
)

# container format, codec, file suffix
FORMATS = {
    "flac": ("flac", "flac", ".flac"),
    "mp3": ("mp3", "mp3", ".mp3"),
    "ogg": ("ogg", "libopus", ".ogg"),
    "webm": ("webm", "libopus", ".webm"),
    "m4a": ("ipod", "aac", ".m4a"),
}


def transcode(wav: Path, name: str) -> bytes:
    """The WAV re-encoded with PyAV into one of FORMATS."""
    import av

    container, codec, _ = FORMATS[name]
    rate = 48000 if "opus" in codec else 16000
    out_buf = io.BytesIO()
    with av.open(str(wav)) as src, av.open(out_buf, "w", format=container) as out:
        stream = out.add_stream(codec, rate=rate)
        stream.layout = "mono"
        resampler = av.AudioResampler(format=stream.format, layout="mono", rate=rate)
        for frame in src.decode(audio=0):
            for f in resampler.resample(frame):
                for packet in stream.encode(f):
                    out.mux(packet)
        for f in resampler.resample(None):
            for packet in stream.encode(f):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return out_buf.getvalue()


def silence_opus(seconds: float) -> bytes:
    """Long, small audio: silence encoded as low-bitrate Opus in Ogg."""
    import av

    out_buf = io.BytesIO()
    with av.open(out_buf, "w", format="ogg") as out:
        stream = out.add_stream("libopus", rate=48000)
        stream.layout = "mono"
        stream.bit_rate = 6000
        frame_samples = 48000 * 10
        for _ in range(int(seconds // 10)):
            frame = av.AudioFrame.from_ndarray(
                np.zeros((1, frame_samples), dtype=np.int16), format="s16", layout="mono"
            )
            frame.sample_rate = 48000
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return out_buf.getvalue()


STT_MODEL = "whisper-tiny.en"


def transcribe(http, data: bytes, filename: str = "speech.wav", **fields):
    """POST /v1/audio/transcriptions of `data` to the embedded default's Whisper."""
    form = {"model": STT_MODEL, **fields}
    return http.post("/v1/audio/transcriptions", data=form, files={"file": (filename, data)})
