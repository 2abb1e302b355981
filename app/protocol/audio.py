"""POST /v1/audio/transcriptions: OpenAI's form fields and the five response formats."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Literal

from deployments.common.errors import ServingError
from deployments.contract import Segment, Transcript, TranscriptDelta

ResponseFormat = Literal["json", "text", "srt", "verbose_json", "vtt"]
Granularity = Literal["word", "segment"]

_LANGUAGE_NAMES = {
    "en": "english", "de": "german", "fr": "french", "es": "spanish", "it": "italian",
    "pt": "portuguese", "nl": "dutch", "ru": "russian", "zh": "chinese", "ja": "japanese",
    "ko": "korean", "ar": "arabic", "hi": "hindi", "pl": "polish", "tr": "turkish",
}  # fmt: skip


def _timestamp(seconds: float, decimal: str) -> str:
    ms = round(seconds * 1000)
    hours, ms = divmod(ms, 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    secs, ms = divmod(ms, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{decimal}{ms:03d}"


def to_srt(segments: list[Segment]) -> str:
    blocks = [
        f"{i}\n{_timestamp(s.start, ',')} --> {_timestamp(s.end, ',')}\n{s.text.strip()}\n"
        for i, s in enumerate(segments, start=1)
    ]
    return "\n".join(blocks)


def to_vtt(segments: list[Segment]) -> str:
    cues = [
        f"{_timestamp(s.start, '.')} --> {_timestamp(s.end, '.')}\n{s.text.strip()}\n"
        for s in segments
    ]
    return "WEBVTT\n\n" + "\n".join(cues)


def render(
    transcript: Transcript, response_format: str, granularities: list[str]
) -> tuple[str | dict, str]:
    """(body, media type) of a transcript in the requested format."""
    if response_format == "text":
        return transcript.text + "\n", "text/plain; charset=utf-8"
    if response_format == "srt":
        return to_srt(transcript.segments), "text/plain; charset=utf-8"
    if response_format == "vtt":
        return to_vtt(transcript.segments), "text/vtt; charset=utf-8"
    usage = usage_of(transcript.duration)
    if response_format == "json":
        return {"text": transcript.text, "usage": usage}, "application/json"
    body: dict = {
        "task": "transcribe",
        "language": _LANGUAGE_NAMES.get(transcript.language, transcript.language),
        "duration": transcript.duration,
        "text": transcript.text,
        "usage": usage,
    }
    if not granularities or "segment" in granularities:
        body["segments"] = [s.model_dump() for s in transcript.segments]
    if "word" in granularities and transcript.words is not None:
        body["words"] = [w.model_dump() for w in transcript.words]
    return body, "application/json"


def usage_of(duration: float) -> dict:
    """OpenAI bills Whisper by whole seconds of audio (at least one)."""
    return {"type": "duration", "seconds": max(1, round(duration))}


async def stream_events(
    items: AsyncIterator[TranscriptDelta | Transcript],
    translate: Callable[[BaseException], BaseException],
) -> AsyncIterator[dict]:
    """OpenAI's streamed-transcription events: `transcript.text.delta` per decoded segment,
    then `transcript.text.done` with the whole text and usage. An error after the first event
    (the status line is sent) becomes an `error` event in OpenAI's error shape, and ends it."""
    started = False
    try:
        async for item in items:
            if isinstance(item, TranscriptDelta):
                text = item.segment.text if started else item.segment.text.lstrip()
                started = started or bool(text)
                if text:
                    yield {"type": "transcript.text.delta", "delta": text}
            else:
                yield {
                    "type": "transcript.text.done",
                    "text": item.text,
                    "language": item.language,
                    "usage": usage_of(item.duration),
                }
    except Exception as exc:
        error = translate(exc)
        if not isinstance(error, ServingError):
            error = ServingError("the transcription failed")
        yield {
            "type": "error",
            "error": {
                "message": error.message,
                "type": error.error_type,
                "param": error.param,
                "code": error.code,
            },
        }
