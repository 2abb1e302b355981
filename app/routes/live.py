"""WebSocket /v1/realtime?intent=transcription&model=M: live audio in, transcripts out.

Modelled on OpenAI's realtime transcription sessions where their events fit:
- client -> server: binary frames of raw PCM (16-bit little-endian mono at `sample_rate`,
  default 24000 Hz as OpenAI's pcm16), or JSON `input_audio_buffer.append` {audio: base64 of
  the same}, `input_audio_buffer.commit`, `input_audio_buffer.clear`,
  `transcription_session.update` {session: {language, prompt}}.
- server -> client: `transcription_session.created`; `transcript.partial` {item_id, text}
  (not an OpenAI event: a tentative transcript of the uncommitted audio after every
  `live_partial_interval_s` of new audio; it may change); `input_audio_buffer.committed`
  {item_id}; `conversation.item.input_audio_transcription.completed` {item_id, transcript,
  language, usage}; `error` {error: OpenAI's error object}.

Bounded: the uncommitted buffer holds at most `live_max_buffer_s` of audio; reaching it commits
the buffer (a final transcript) before more is read, so a client sending faster than the pool
transcribes is slowed by TCP back-pressure, not buffered. At most one partial is in flight;
partials due while one runs are skipped. Bad frames (not JSON, a frame over the buffer, PCM of
odd length, undecodable base64) get an `error` event and a close with code 1007 (invalid
payload) or 1009 (too big); an unknown model or intent closes with 1008 after its `error`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import itertools
import json
import time
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from app.pools import SpeechClient
from deployments.common.errors import InvalidRequest, ServingError
from deployments.contract import CallContext, TranscriptionOptions
from deployments.stt.decode import wav_header
from recipes.engines import SttEngineConfig, Task

router = APIRouter(tags=["audio"])

INVALID_PAYLOAD, POLICY, TOO_BIG = 1007, 1008, 1009
MIN_RATE, MAX_RATE = 8000, 48000
_items = itertools.count(1)


class BadFrame(Exception):
    def __init__(self, message: str, close_code: int = INVALID_PAYLOAD):
        super().__init__(message)
        self.message, self.close_code = message, close_code


def _error(message: str, code: str | None = None, param: str | None = None) -> dict[str, Any]:
    error = {"message": message, "type": "invalid_request_error", "param": param, "code": code}
    return {"type": "error", "error": error}


def _serving_error(exc: ServingError) -> dict[str, Any]:
    error = {"message": exc.message, "type": exc.error_type, "param": exc.param, "code": exc.code}
    return {"type": "error", "error": error}


@router.websocket("/v1/realtime")
async def realtime(
    ws: WebSocket,
    model: str,
    intent: str = "transcription",
    sample_rate: int = 24000,
    language: str | None = None,
) -> None:
    await ws.accept()
    try:
        if intent != "transcription":
            raise InvalidRequest(
                "this server's realtime endpoint transcribes: use intent=transcription",
                param="intent",
            )
        if not MIN_RATE <= sample_rate <= MAX_RATE:
            raise InvalidRequest(
                f"sample_rate must be {MIN_RATE}-{MAX_RATE} Hz", param="sample_rate"
            )
        registry = ws.app.state.registry
        pool = registry.route(registry.resolve(model, Task.TRANSCRIBE)).pool
    except ServingError as exc:
        await ws.send_json(_serving_error(exc))
        await ws.close(POLICY, exc.message[:120])
        return
    session = LiveSession(ws, pool.client, pool.spec.engine, sample_rate, language)
    await session.run()


class LiveSession:
    def __init__(
        self,
        ws: WebSocket,
        client: SpeechClient,
        engine: SttEngineConfig,
        sample_rate: int,
        language: str | None,
    ):
        self.ws, self.client, self.rate = ws, client, sample_rate
        self.options = TranscriptionOptions(language=language)
        self.max_bytes = int(engine.live_max_buffer_s * sample_rate) * 2
        self.partial_bytes = max(2, int(engine.live_partial_interval_s * sample_rate) * 2)
        self.buffer = bytearray()
        self.since_partial = 0
        self.item_id = f"item_{next(_items)}"
        self.partial: asyncio.Task | None = None
        self.request_id = ws.headers.get("x-request-id", "") or self.item_id

    async def run(self) -> None:
        await self.ws.send_json(
            {
                "type": "transcription_session.created",
                "session": {
                    "model": self.client.spec.model.name,
                    "input_audio_format": "pcm16",
                    "sample_rate": self.rate,
                    "max_buffer_s": self.max_bytes / 2 / self.rate,
                },
            }
        )
        try:
            while True:
                message = await self.ws.receive()
                if message["type"] == "websocket.disconnect":
                    return
                await self.handle(message)
        except WebSocketDisconnect:
            return
        except BadFrame as exc:
            await self.ws.send_json(_error(exc.message, code="invalid_frame"))
            await self.ws.close(exc.close_code, exc.message[:120])
        finally:
            if self.partial is not None:
                self.partial.cancel()

    async def handle(self, message: dict[str, Any]) -> None:
        if message.get("bytes") is not None:
            await self.append(message["bytes"])
            return
        try:
            event = json.loads(message.get("text") or "")
        except ValueError:
            raise BadFrame("a text frame must be one JSON event") from None
        kind = event.get("type") if isinstance(event, dict) else None
        if kind == "input_audio_buffer.append":
            try:
                pcm = base64.b64decode(event.get("audio", ""), validate=True)
            except (binascii.Error, TypeError):
                raise BadFrame("input_audio_buffer.append: audio is not base64") from None
            await self.append(pcm)
        elif kind == "input_audio_buffer.commit":
            await self.commit()
        elif kind == "input_audio_buffer.clear":
            self.buffer.clear()
            self.since_partial = 0
        elif kind == "transcription_session.update":
            session = event.get("session") or {}
            self.options = TranscriptionOptions(
                language=session.get("language", self.options.language),
                prompt=session.get("prompt", self.options.prompt),
            )
        else:
            await self.ws.send_json(_error(f"unknown event type {kind!r}", code="unknown_event"))

    async def append(self, pcm: bytes) -> None:
        if len(pcm) % 2:
            raise BadFrame("PCM frames hold 16-bit samples: an odd number of bytes")
        if len(pcm) > self.max_bytes:
            raise BadFrame(
                f"a frame of {len(pcm)} bytes is over the session's buffer of {self.max_bytes}",
                TOO_BIG,
            )
        if len(self.buffer) + len(pcm) > self.max_bytes:
            await self.commit()  # the buffer is full: its final transcript first
        self.buffer += pcm
        self.since_partial += len(pcm)
        if self.since_partial >= self.partial_bytes and (
            self.partial is None or self.partial.done()
        ):
            self.since_partial = 0
            self.partial = asyncio.create_task(self.send_partial(self.item_id, bytes(self.buffer)))

    async def send_partial(self, item_id: str, pcm: bytes) -> None:
        with contextlib.suppress(ServingError):  # a partial that fails is just skipped
            transcript = await self.transcribe(pcm)
            if item_id == self.item_id:  # not committed meanwhile
                await self.ws.send_json(
                    {"type": "transcript.partial", "item_id": item_id, "text": transcript.text}
                )

    async def commit(self) -> None:
        item_id, pcm = self.item_id, bytes(self.buffer)
        self.buffer.clear()
        self.since_partial = 0
        self.item_id = f"item_{next(_items)}"
        if self.partial is not None and not self.partial.done():
            self.partial.cancel()
        if not pcm:
            await self.ws.send_json(
                _error("input_audio_buffer.commit: the buffer is empty", code="buffer_empty")
            )
            return
        await self.ws.send_json({"type": "input_audio_buffer.committed", "item_id": item_id})
        try:
            transcript = await self.transcribe(pcm)
        except ServingError as exc:
            await self.ws.send_json(_serving_error(exc))
            return
        await self.ws.send_json(
            {
                "type": "conversation.item.input_audio_transcription.completed",
                "item_id": item_id,
                "content_index": 0,
                "transcript": transcript.text,
                "language": transcript.language,
                "usage": {"type": "duration", "seconds": round(len(pcm) / 2 / self.rate, 3)},
            }
        )

    async def transcribe(self, pcm: bytes):
        context = CallContext(request_id=self.request_id, arrival=time.time())
        wav = wav_header(self.rate, len(pcm) // 2) + pcm
        return await self.client.transcribe(wav, self.options, context)
