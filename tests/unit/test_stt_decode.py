"""Audio decoding limits, the streamed-transcription events and where CUDA 12 libraries come
from: real PyAV on generated audio, no Serve app."""

from __future__ import annotations

import asyncio
import io
import resource

import numpy as np
import pytest

from app.protocol.audio import stream_events
from deployments.common.errors import InvalidRequest, Overloaded
from deployments.contract import Segment, Transcript, TranscriptDelta
from deployments.stt import cuda_libs
from deployments.stt.decode import SAMPLE_RATE, AudioTooLong, DecodeLimits, decode, wav_header

LIMITS = DecodeLimits(max_seconds=60)


def pcm_wav(seconds: float, rate: int = 16000) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    samples = (0.3 * np.sin(2 * np.pi * 440 * t) * 32767).astype("<i2")
    return wav_header(rate, samples.size) + samples.tobytes()


def test_wav_decodes_to_16k_mono_float32():
    audio = decode(pcm_wav(2.0, rate=48000), LIMITS)
    assert audio.dtype == np.float32 and abs(audio.size - 2 * SAMPLE_RATE) < 200
    assert 0.25 < float(np.abs(audio).max()) < 0.35


def test_same_samples_as_faster_whispers_decoder():
    from faster_whisper import decode_audio

    data = pcm_wav(1.5, rate=22050)
    ours, theirs = decode(data, LIMITS), decode_audio(io.BytesIO(data))
    assert ours.size == theirs.size
    assert float(np.abs(ours - theirs).max()) < 1e-3


def test_one_hz_bomb_is_refused_before_decoding():
    bomb = wav_header(1, 950) + np.zeros(950, dtype="<i2").tobytes()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(InvalidRequest, match="1 Hz") as info:
        decode(bomb, LIMITS)
    assert info.value.code == "invalid_audio"
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mib < 50  # the ~30 M samples it would have made are ~115 MiB


def test_declared_length_over_the_limit_is_refused_from_the_header():
    with pytest.raises(AudioTooLong, match="declares 7200s"):
        decode(wav_header(8000, 8000 * 7200) + b"\0" * 4000, DecodeLimits(max_seconds=1800))


def test_decoded_samples_over_the_budget_stop_the_decoder(monkeypatch):
    # A container that states no length (streams, some raw codecs): simulated by hiding the
    # Ogg file's own; the sample budget stops the decoder at the limit.
    from deployments.stt import decode as decode_module
    from tests.audio import silence_opus

    monkeypatch.setattr(decode_module, "_declared_seconds", lambda container, stream: None)
    with pytest.raises(AudioTooLong, match="holds more than"):
        decode(silence_opus(40), DecodeLimits(max_seconds=30))


def test_truncated_and_empty_and_junk_are_400():
    data = pcm_wav(2.0)
    with pytest.raises(InvalidRequest, match="truncated"):
        decode(data[: len(data) // 2], LIMITS)
    with pytest.raises(InvalidRequest, match="no audio samples"):
        decode(data[:44], LIMITS)
    with pytest.raises(InvalidRequest, match="empty"):
        decode(b"", LIMITS)
    with pytest.raises(InvalidRequest, match="could not be decoded"):
        decode(b"\x00\x01junk" * 300, LIMITS)


async def _collect(items):
    return [e async for e in items]


def _segment(i: int, text: str) -> Segment:
    return Segment(
        id=i,
        seek=0,
        start=i,
        end=i + 1,
        text=text,
        tokens=[],
        temperature=0,
        avg_logprob=0,
        compression_ratio=1,
        no_speech_prob=0,
    )


def test_stream_events_are_openais_delta_then_done():
    async def items():
        yield TranscriptDelta(segment=_segment(0, " Hello there."))
        yield TranscriptDelta(segment=_segment(1, " General Kenobi."))
        yield Transcript(
            text="Hello there. General Kenobi.", language="en", duration=2.4, segments=[]
        )

    events = asyncio.run(_collect(stream_events(items(), lambda e: e)))
    assert events == [
        {"type": "transcript.text.delta", "delta": "Hello there."},
        {"type": "transcript.text.delta", "delta": " General Kenobi."},
        {
            "type": "transcript.text.done",
            "text": "Hello there. General Kenobi.",
            "language": "en",
            "usage": {"type": "duration", "seconds": 2},
        },
    ]


def test_an_error_mid_stream_becomes_an_error_event():
    async def items():
        yield TranscriptDelta(segment=_segment(0, " Hello."))
        raise Overloaded("busy", retry_after_s=1)

    events = asyncio.run(_collect(stream_events(items(), lambda e: e)))
    assert events[-1] == {
        "type": "error",
        "error": {
            "message": "busy",
            "type": "rate_limit_error",
            "param": None,
            "code": "queue_full",
        },
    }


def test_cuda_libs_report_missing_on_a_host_without_them(monkeypatch):
    monkeypatch.delenv(cuda_libs.ENV_DIR, raising=False)
    libs = cuda_libs.preload()
    assert libs.source == "missing" and not libs.found and "libcublas.so.12" in libs.detail


def test_cuda_libs_come_from_the_wheels_folder_first(tmp_path, monkeypatch):
    # A CUDA 12 wheel layout (nvidia/cublas/lib) whose "library" is a real shared object
    # (libc under the cuBLAS name): found on sys.path and loaded before the env folder.
    import ctypes.util
    import os

    libc = ctypes.util.find_library("c")
    real = next(
        p for p in ("/lib/x86_64-linux-gnu/" + libc, "/usr/lib/" + libc) if os.path.exists(p)
    )
    folder = tmp_path / "nvidia" / "cublas" / "lib"
    folder.mkdir(parents=True)
    (folder / "libcublas.so.12").symlink_to(real)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv(cuda_libs.ENV_DIR, str(tmp_path))
    libs = cuda_libs.preload()
    assert libs.source == "pip-wheels" and libs.detail == str(tmp_path / "nvidia")
