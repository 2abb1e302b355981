"""POST /v1/audio/transcriptions (multipart form, OpenAI's fields), unary or streamed (SSE)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

import orjson
from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import JSONResponse, Response, StreamingResponse

from app.pools import SpeechClient
from app.protocol.audio import Granularity, ResponseFormat, render, stream_events
from app.routes.deps import call_context, call_pool, charge, pool_headers, resolve_pool
from app.routes.generate import SSE_HEADERS
from deployments.common.errors import InvalidRequest, PayloadTooLarge
from deployments.contract import TranscriptionOptions
from recipes.engines import SttEngineConfig, Task

router = APIRouter(tags=["audio"])

STREAMABLE_FORMATS = ("json", "text")


@router.post("/v1/audio/transcriptions")
async def transcriptions(
    request: Request,
    file: Annotated[UploadFile, File(description="Audio: wav, mp3, flac, ogg, webm, m4a, ...")],
    model: Annotated[str, Form()],
    language: Annotated[str | None, Form(min_length=2, max_length=3)] = None,
    prompt: Annotated[str | None, Form()] = None,
    response_format: Annotated[ResponseFormat, Form()] = "json",
    temperature: Annotated[float | None, Form(ge=0, le=1)] = None,
    timestamp_granularities: Annotated[
        list[Granularity] | None, Form(alias="timestamp_granularities[]")
    ] = None,
    stream: Annotated[bool, Form()] = False,
) -> Response:
    pool = resolve_pool(request, model, Task.TRANSCRIBE)
    granularities = list(timestamp_granularities or [])
    if granularities and response_format != "verbose_json":
        raise InvalidRequest(
            "timestamp_granularities needs response_format=verbose_json",
            param="timestamp_granularities",
        )
    if stream and response_format not in STREAMABLE_FORMATS:
        raise InvalidRequest(
            f"stream=true sends transcript.text.* events; response_format must be one of "
            f"{', '.join(STREAMABLE_FORMATS)}",
            param="stream",
        )
    engine: SttEngineConfig = pool.spec.engine  # type: ignore[assignment]
    limit = engine.max_upload_bytes
    if file.size is not None and file.size > limit:
        raise PayloadTooLarge(
            f"uploaded file is {file.size} bytes; this model accepts at most {limit}", param="file"
        )
    data = await file.read()
    if not data:
        raise InvalidRequest("the uploaded file is empty", param="file")
    options = TranscriptionOptions(
        language=language,
        prompt=prompt,
        temperature=temperature,
        word_timestamps="word" in granularities,
    )
    context = call_context(request)
    if stream:
        items, pool = await call_pool(
            request, lambda client: client.transcribe_stream(data, options, context)
        )
        return StreamingResponse(
            _sse(items, pool.client),
            media_type="text/event-stream",
            headers={**SSE_HEADERS, **pool_headers(pool)},
        )
    transcript, pool = await call_pool(
        request, lambda client: client.transcribe(data, options, context)
    )
    charge(request, pool, 0, audio_seconds=transcript.duration)
    body, media_type = render(transcript, response_format, granularities)
    headers = pool_headers(pool)
    if isinstance(body, dict):
        return JSONResponse(content=body, headers=headers)
    return Response(content=body, media_type=media_type, headers=headers)


async def _sse(items: AsyncIterator, client: SpeechClient) -> AsyncIterator[bytes]:
    try:
        async for event in stream_events(items, client.translate):
            yield b"data: " + orjson.dumps(event) + b"\n\n"
    finally:
        await items.aclose()  # a client that left stops the decoder (the pool's generator closes)
