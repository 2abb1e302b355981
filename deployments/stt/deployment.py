"""Ray Serve deployment for speech-to-text.

Concurrency model: requests are not batched across clients. Each replica runs up to
`num_workers` transcriptions at once on CTranslate2 workers (each with `cpu_threads`
threads), so concurrent requests run side by side instead of queueing behind one another;
long files go through faster-whisper's batched pipeline (VAD chunks decoded in batches).
Decoding (PyAV) and transcription run off the event loop.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

from ray import serve

from deployments.common.ports import bind_replica_grpc_to_node
from deployments.contract import CallContext, Transcript, TranscriptionOptions
from deployments.stt.engine import WhisperEngine
from recipes.engines import SttEngineConfig
from recipes.model_source import ModelSource
from telemetry.identity import PoolIdentity
from telemetry.pool import PoolTelemetry
from telemetry.tracing import span


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
        self.telemetry.ready()

    async def transcribe(
        self, data: bytes, options: TranscriptionOptions, context: CallContext
    ) -> Transcript:
        with (
            self.telemetry.request(context.request_id),
            span("stt.transcribe", model=self.identity.model),
        ):
            audio = await asyncio.to_thread(self.engine.decode, data)
            seconds = self.engine.check(audio, options)

            def run() -> Transcript:
                self.telemetry.queued(context.arrival)
                started = time.perf_counter()
                transcript = self.engine.transcribe(audio, options)
                self.telemetry.batch(1, time.perf_counter() - started)
                return transcript

            transcript = await asyncio.get_running_loop().run_in_executor(self._workers, run)
            self.telemetry.items("audio_seconds", seconds)
            return transcript
