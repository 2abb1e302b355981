"""Streamed transcription (SSE), where the speech pool runs, and hostile audio: end to end on
the shared app with the real Whisper tiny.en."""

from __future__ import annotations

import json
import time

import numpy as np

from deployments.stt.decode import wav_header
from ops.quality import word_error_rate
from tests.audio import FOX, PLATFORM, STT_MODEL, transcribe
from tests.conftest import assert_openai_error


def sse_events(response) -> list[dict]:
    return [json.loads(line[6:]) for line in response.iter_lines() if line.startswith("data: ")]


# --- streamed transcription --------------------------------------------------------------------


def test_stream_sends_a_delta_per_segment_then_done(http, speech):
    data = speech["platform"].read_bytes()
    unary = transcribe(http, data).json()
    with http.stream(
        "POST",
        "/v1/audio/transcriptions",
        data={"model": STT_MODEL, "stream": "true"},
        files={"file": ("plat.wav", data)},
    ) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        assert r.headers["x-recipe"].startswith("stt-whisper-tiny-cpu@1+")
        events = sse_events(r)
    deltas = [e for e in events if e["type"] == "transcript.text.delta"]
    assert len(deltas) >= 2, events  # several sentences: more than one segment
    assert events[-1]["type"] == "transcript.text.done"
    done = events[-1]
    assert [e["type"] for e in events[:-1]] == ["transcript.text.delta"] * len(deltas)
    # The stream says exactly what the unary call says, piece by piece.
    assert "".join(d["delta"] for d in deltas).strip() == done["text"] == unary["text"]
    assert word_error_rate(PLATFORM, done["text"]) <= 0.3
    assert done["usage"] == unary["usage"]


def test_official_openai_client_reads_the_stream(openai_client, speech):
    with open(speech["fox"], "rb") as f:
        stream = openai_client.audio.transcriptions.create(model=STT_MODEL, file=f, stream=True)
        events = list(stream)
    types = [e.type for e in events]
    assert types[-1] == "transcript.text.done" and "transcript.text.delta" in types
    assert word_error_rate(FOX, events[-1].text) <= 0.25
    assert "".join(e.delta for e in events[:-1]).strip() == events[-1].text


def test_stream_with_an_unstreamable_format_is_400(http, speech):
    r = transcribe(http, speech["fox"].read_bytes(), stream="true", response_format="srt")
    assert_openai_error(r, 400, "stream")


def test_stream_of_bad_audio_is_a_400_before_any_event(http):
    r = transcribe(http, b"not audio at all" * 50, stream="true")
    assert assert_openai_error(r, 400, "file")["code"] == "invalid_audio"


# --- where the pool runs -----------------------------------------------------------------------


def test_models_list_reports_where_speech_runs(http):
    cards = {c["id"]: c for c in http.get("/v1/models").json()["data"]}
    runtime = cards[STT_MODEL]["runtime"]
    assert runtime["device"] == "cpu" and runtime["compute_type"] == "int8"
    assert runtime["requested_device"] == "cpu" and runtime["fallback_reason"] is None
    assert "runtime" not in cards["all-minilm-l6-v2"]
    assert http.get(f"/v1/models/{STT_MODEL}").json()["runtime"] == runtime


def test_runtime_metric_names_the_device(http):
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        lines = [m for m in http.get("/metrics").text.splitlines() if "stt_runtime_info{" in m]
        if lines:
            break
        time.sleep(2)
    assert lines, "platform_stt_runtime_info not exported"
    assert 'device="cpu"' in lines[0] and 'fallback="none"' in lines[0]
    assert lines[0].rstrip().endswith(" 1.0") or lines[0].rstrip().endswith(" 1")


# --- hostile and broken audio ------------------------------------------------------------------


def test_decompression_bomb_is_refused_from_its_header(http):
    # A 1.9 KB WAV declaring 1 Hz: resampled to 16 kHz it would be ~15 M samples.
    pcm = np.random.default_rng(0).integers(-999, 999, 950, dtype=np.int16).tobytes()
    started = time.monotonic()
    r = transcribe(http, wav_header(1, 950) + pcm)
    error = assert_openai_error(r, 400, "file")
    assert error["code"] == "invalid_audio" and "1 Hz" in error["message"]
    assert time.monotonic() - started < 5


def test_header_declaring_too_much_audio_is_refused_before_decoding(http):
    # 8 kHz, and a data chunk that says 2 hours: refused from the header (the file is 2 KB).
    r = transcribe(http, wav_header(8000, 8000 * 7200) + b"\0" * 2000)
    error = assert_openai_error(r, 400, "file")
    assert error["code"] == "audio_too_long" and "declares" in error["message"]


def test_truncated_wav_is_400(http, speech):
    data = speech["fox"].read_bytes()
    error = assert_openai_error(transcribe(http, data[: len(data) // 2]), 400, "file")
    assert "truncated" in error["message"]


def test_header_only_wav_is_400(http, speech):
    error = assert_openai_error(transcribe(http, speech["fox"].read_bytes()[:44]), 400, "file")
    assert error["code"] == "invalid_audio"
