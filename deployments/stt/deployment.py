"""Ray Serve deployment for speech-to-text.

Concurrency model: requests are not batched across clients. Each replica runs up to
`num_workers` transcriptions at once on CTranslate2 workers (each with `cpu_threads`
threads), so concurrent requests run side by side instead of queueing behind one another;
long files go through faster-whisper's batched pipeline (VAD chunks decoded in batches).
Decoding (PyAV) runs on its own pool of `decode_workers` threads, so a burst of uploads
decodes at most that many files at once (each bounded by deployments.stt.decode's limits);
transcription runs on the `num_workers` pool. Neither runs on the event loop or in asyncio's
default executor.

A streamed transcription hands each segment to the caller as the decoder produces it; when the
caller goes away (the generator is closed) the decoder stops at the next segment.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from ray import serve

from deployments.common.ports import bind_replica_grpc_to_node
from deployments.contract import (
    CallContext,
    Transcript,
    TranscriptDelta,
    TranscriptionOptions,
)
from deployments.stt.engine import WhisperEngine, transcript_of
from recipes.engines import SttEngineConfig
from recipes.model_source import ModelSource
from telemetry import metrics
from telemetry.identity import PoolIdentity
from telemetry.pool import PoolTelemetry
from telemetry.tracing import span

_END = object()


@serve.deployment(name="stt")
class TranscriptionDeployment:
    """Implements deployments.contract.SpeechPool."""

    def __init__(self, identity: PoolIdentity, model: ModelSource, engine: SttEngineConfig):
        bind_replica_grpc_to_node()
        self.identity = identity
        self.config = engine
        self.telemetry = PoolTelemetry(identity)
        self.engine = WhisperEngine(model.resolve(), engine)
        self._workers = ThreadPoolExecutor(
            max_workers=engine.num_workers, thread_name_prefix="whisper"
        )
        self._decoders = ThreadPoolExecutor(
            max_workers=engine.decode_workers, thread_name_prefix="decode"
        )
        runtime = self.engine.runtime()
        self.telemetry.info(
            metrics.stt_runtime_info(),
            {
                "device": runtime.device,
                "compute_type": runtime.compute_type,
                "fallback": runtime.device if runtime.fallback_reason else "none",
                "cuda_libs": runtime.cuda_libs.split(":")[0],
            },
        )
        self.telemetry.ready()

    async def runtime(self) -> dict[str, Any]:
        """Where this replica really runs (device, compute type, fallback reason)."""
        return self.engine.runtime().as_dict()

    async def _decode(self, data: bytes, options: TranscriptionOptions) -> tuple[np.ndarray, float]:
        loop = asyncio.get_running_loop()
        audio = await loop.run_in_executor(self._decoders, self.engine.decode, data)
        return audio, self.engine.check(audio, options)

    async def transcribe(
        self, data: bytes, options: TranscriptionOptions, context: CallContext
    ) -> Transcript:
        with (
            self.telemetry.request(context.request_id),
            span("stt.transcribe", model=self.identity.model),
        ):
            audio, seconds = await self._decode(data, options)

            def run() -> Transcript:
                self.telemetry.queued(context.arrival)
                started = time.perf_counter()
                transcript = self.engine.transcribe(audio, options)
                self.telemetry.batch(1, time.perf_counter() - started)
                return transcript

            transcript = await asyncio.get_running_loop().run_in_executor(self._workers, run)
            self.telemetry.items("audio_seconds", seconds)
            return transcript

    async def transcribe_stream(
        self, data: bytes, options: TranscriptionOptions, context: CallContext
    ) -> AsyncIterator[TranscriptDelta | Transcript]:
        with (
            self.telemetry.request(context.request_id),
            span("stt.transcribe_stream", model=self.identity.model),
        ):
            audio, seconds = await self._decode(data, options)
            loop = asyncio.get_running_loop()
            queue: asyncio.Queue = asyncio.Queue()
            stop = threading.Event()

            def run() -> None:
                self.telemetry.queued(context.arrival)
                started = time.perf_counter()
                try:
                    segments, info = self.engine.segments(audio, options)
                    done, words = [], []
                    for segment, segment_words in segments:
                        if stop.is_set():  # the caller left: stop decoding
                            return
                        done.append(segment)
                        words += segment_words
                        loop.call_soon_threadsafe(
                            queue.put_nowait, TranscriptDelta(segment=segment, words=segment_words)
                        )
                    result = transcript_of(done, words, info, options)
                    self.telemetry.batch(1, time.perf_counter() - started)
                    loop.call_soon_threadsafe(queue.put_nowait, result)
                except BaseException as exc:  # handed to the caller below
                    loop.call_soon_threadsafe(queue.put_nowait, exc)
                finally:
                    loop.call_soon_threadsafe(queue.put_nowait, _END)

            loop.run_in_executor(self._workers, run)
            try:
                while (item := await queue.get()) is not _END:
                    if isinstance(item, BaseException):
                        raise item
                    yield item
                self.telemetry.items("audio_seconds", seconds)
            finally:
                stop.set()
