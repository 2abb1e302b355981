"""POST /v1/audio/transcriptions: OpenAI's form fields and the five response formats."""

from __future__ import annotations

from typing import Literal

from deployments.contract import Segment, Transcript

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
    usage = {"type": "duration", "seconds": max(1, round(transcript.duration))}
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
