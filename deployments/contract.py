"""The contract between the Gateway and the pools: what each pool's deployment is called with
and what it returns. Plain data only (arrays, numbers, strings): the Gateway owns every wire
format, and a pool knows nothing of HTTP or of the API's JSON shapes.

Each pool kind has a typed call interface (a Protocol its deployment implements and the
Gateway's client for that kind calls). Batched kinds take a list of calls and answer one
outcome per call: the result, or the ServingError that refused that call alone, so one bad
request coalesced with others fails only itself.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from pydantic import BaseModel

from deployments.common.errors import ServingError


@dataclass(frozen=True, slots=True)
class CallContext:
    """What the Gateway hands every pool call besides the request itself."""

    request_id: str
    arrival: float
    """Wall-clock time the Gateway received the request (for queue time across the hop)."""
    routing: str | None = None
    """LLM pools with a prefix-affinity router: `power_of_two` asks for Serve's default choice
    for this request (the `x-routing-policy` header; A/B measurements)."""


# -- embeddings ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EmbedCall:
    inputs: list[str] | list[list[int]]
    """Texts, or token-id lists of the model's own tokenizer."""
    truncate: bool | None
    """Over-long input: truncate, refuse (400), or None for the pool's default."""
    dimensions: int | None
    """Keep the first N dimensions (re-normalized when the pool normalizes)."""
    context: CallContext


@dataclass(frozen=True, slots=True)
class Embeddings:
    vectors: np.ndarray
    """float32, one row per input, in input order."""
    prompt_tokens: int


class EmbeddingPool(Protocol):
    async def embed(self, calls: list[EmbedCall]) -> list[Embeddings | ServingError]: ...


# -- rerank -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RerankCall:
    query: str
    documents: list[str]
    truncate: bool | None
    context: CallContext


@dataclass(frozen=True, slots=True)
class Scores:
    scores: np.ndarray
    """float32 relevance of each document, in document order."""
    tokens: int


class RerankPool(Protocol):
    async def rerank(self, calls: list[RerankCall]) -> list[Scores | ServingError]: ...


# -- speech -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TranscriptionOptions:
    language: str | None = None
    prompt: str | None = None
    temperature: float | None = None
    word_timestamps: bool = False


class Word(BaseModel):
    word: str
    start: float
    end: float


class Segment(BaseModel):
    id: int
    seek: int
    start: float
    end: float
    text: str
    tokens: list[int]
    temperature: float
    avg_logprob: float
    compression_ratio: float
    no_speech_prob: float


class Transcript(BaseModel):
    text: str
    language: str
    language_probability: float = 1.0
    duration: float
    segments: list[Segment]
    words: list[Word] | None = None


class TranscriptDelta(BaseModel):
    """One decoded segment of a streamed transcription (`words` when asked for)."""

    segment: Segment
    words: list[Word] = []


class SpeechPool(Protocol):
    """`transcribe_stream` yields a TranscriptDelta per segment as the decoder produces it, then
    the whole Transcript; errors found before decoding are raised before the first item."""

    async def transcribe(
        self, audio: bytes, options: TranscriptionOptions, context: CallContext
    ) -> Transcript: ...

    def transcribe_stream(
        self, audio: bytes, options: TranscriptionOptions, context: CallContext
    ) -> AsyncIterator[TranscriptDelta | Transcript]: ...

    async def runtime(self) -> dict[str, Any]: ...


# -- LLM ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TokenCounts:
    """The last item of a generation call that ran to its end: what the engine counted (prompt
    tokens, generated tokens, prompt tokens served from its prefix cache). The Gateway logs it
    and sends the client nothing for it."""

    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int


class LLMPool(Protocol):
    """Generation calls are generators: a streamed request yields its SSE lines (vLLM's own
    OpenAI chunks), a unary one yields its single JSON body; then one TokenCounts. Errors found
    before generating are raised before the first item, so the Gateway can still answer with a
    4xx status."""

    def chat(
        self, body: dict[str, Any], context: CallContext
    ) -> AsyncIterator[str | dict | TokenCounts]: ...

    def completion(
        self, body: dict[str, Any], context: CallContext
    ) -> AsyncIterator[str | dict | TokenCounts]: ...
