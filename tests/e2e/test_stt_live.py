"""WebSocket /v1/realtime?intent=transcription: live PCM in, partial and final transcripts out,
on the shared app with the real Whisper tiny.en."""

from __future__ import annotations

import base64
import json
import time

import numpy as np
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from deployments.stt.decode import DecodeLimits, decode
from ops.quality import word_error_rate
from tests.audio import FOX, speak

MODEL = "whisper-tiny.en"


@pytest.fixture(scope="module")
def fox_pcm(tmp_path_factory) -> bytes:
    """The fox sentence as 16 kHz 16-bit mono PCM, as a live client would send it."""
    wav = speak(FOX, tmp_path_factory.mktemp("live") / "fox.wav").read_bytes()
    audio = decode(wav, DecodeLimits(max_seconds=60))
    return (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()


def ws_url(serve_app: str, **params) -> str:
    query = "&".join(f"{k}={v}" for k, v in {"intent": "transcription", **params}.items())
    return serve_app.replace("http://", "ws://") + f"/v1/realtime?{query}"


def events_until(ws, final_type: str, limit: int = 50) -> list[dict]:
    events = []
    for _ in range(limit):
        events.append(json.loads(ws.recv(timeout=60)))
        if events[-1]["type"] in (final_type, "error"):
            break
    return events


def test_live_pcm_gives_partials_then_a_final_transcript(serve_app, fox_pcm):
    with connect(ws_url(serve_app, model=MODEL, sample_rate=16000)) as ws:
        created = json.loads(ws.recv(timeout=30))
        assert created["type"] == "transcription_session.created"
        assert created["session"]["sample_rate"] == 16000
        chunk = 16000 * 2 // 4  # 250 ms of audio per binary frame, at a microphone's pace
        for i in range(0, len(fox_pcm), chunk):
            ws.send(fox_pcm[i : i + chunk])
            time.sleep(0.25)
        ws.send(json.dumps({"type": "input_audio_buffer.commit"}))
        events = events_until(ws, "conversation.item.input_audio_transcription.completed")
    types = [e["type"] for e in events]
    assert "transcript.partial" in types, types  # 3.5 s of audio: partials after each second
    committed = next(e for e in events if e["type"] == "input_audio_buffer.committed")
    final = events[-1]
    assert final["type"] == "conversation.item.input_audio_transcription.completed", final
    assert final["item_id"] == committed["item_id"]
    assert word_error_rate(FOX, final["transcript"]) <= 0.25, final
    assert final["usage"]["seconds"] == pytest.approx(len(fox_pcm) / 2 / 16000, abs=0.01)


def test_base64_append_events_at_openai_rate(serve_app, fox_pcm):
    # OpenAI's pcm16 is 24 kHz: upsample the 16 kHz clip (the pool resamples it back).
    samples = np.frombuffer(fox_pcm, dtype="<i2").astype(np.float32)
    up = np.interp(np.arange(0, samples.size, 2 / 3), np.arange(samples.size), samples)
    pcm24 = up.astype("<i2").tobytes()
    with connect(ws_url(serve_app, model=MODEL)) as ws:
        assert json.loads(ws.recv(timeout=30))["session"]["sample_rate"] == 24000
        audio = base64.b64encode(pcm24).decode()
        ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": audio}))
        ws.send(json.dumps({"type": "input_audio_buffer.commit"}))
        final = events_until(ws, "conversation.item.input_audio_transcription.completed")[-1]
    assert word_error_rate(FOX, final["transcript"]) <= 0.25, final


def test_a_full_buffer_is_committed_on_its_own(serve_app, fox_pcm):
    # The CPU recipe buffers 30 s: 40 s of audio commits once by itself, then on request.
    silence_and_speech = (b"\0\0" * 16000 * 28 + fox_pcm) + fox_pcm * 2
    with connect(ws_url(serve_app, model=MODEL, sample_rate=16000)) as ws:
        json.loads(ws.recv(timeout=30))
        for i in range(0, len(silence_and_speech), 32000):
            ws.send(silence_and_speech[i : i + 32000])
        ws.send(json.dumps({"type": "input_audio_buffer.commit"}))
        finals = []
        for _ in range(80):
            event = json.loads(ws.recv(timeout=120))
            if event["type"] == "conversation.item.input_audio_transcription.completed":
                finals.append(event)
                if len(finals) == 2:
                    break
    assert len(finals) == 2 and finals[0]["usage"]["seconds"] <= 30
    assert finals[0]["item_id"] != finals[1]["item_id"]


@pytest.mark.parametrize(
    "frame, code",
    [
        ("not json", 1007),
        (b"\x01\x02\x03", 1007),  # odd byte count: not 16-bit PCM
        (json.dumps({"type": "input_audio_buffer.append", "audio": "%%%"}), 1007),
        (b"\0" * (16000 * 2 * 31), 1009),  # one frame over the 30 s buffer
    ],
)
def test_bad_frames_get_an_error_and_a_clear_close(serve_app, frame, code):
    with connect(ws_url(serve_app, model=MODEL, sample_rate=16000), max_size=None) as ws:
        json.loads(ws.recv(timeout=30))
        ws.send(frame)
        error = json.loads(ws.recv(timeout=30))
        assert error["type"] == "error" and error["error"]["code"] == "invalid_frame"
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=30)
        assert ws.close_code == code


def test_unknown_model_is_an_error_then_a_policy_close(serve_app):
    with connect(ws_url(serve_app, model="nope")) as ws:
        error = json.loads(ws.recv(timeout=30))
        assert error["type"] == "error" and error["error"]["code"] == "model_not_found"
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=30)
        assert ws.close_code == 1008


def test_unknown_event_and_empty_commit_are_errors_that_keep_the_session(serve_app, fox_pcm):
    with connect(ws_url(serve_app, model=MODEL, sample_rate=16000)) as ws:
        json.loads(ws.recv(timeout=30))
        ws.send(json.dumps({"type": "response.create"}))
        assert json.loads(ws.recv(timeout=30))["error"]["code"] == "unknown_event"
        ws.send(json.dumps({"type": "input_audio_buffer.commit"}))
        assert json.loads(ws.recv(timeout=30))["error"]["code"] == "buffer_empty"
        ws.send(fox_pcm)
        ws.send(json.dumps({"type": "input_audio_buffer.commit"}))
        final = events_until(ws, "conversation.item.input_audio_transcription.completed")[-1]
        assert word_error_rate(FOX, final["transcript"]) <= 0.25
