"""Ray Serve deployment for speech-to-text.

Concurrency model: requests are not batched across clients. Each replica runs up to
`num_workers` transcriptions at once on CTranslate2 workers (each with `cpu_threads`
threads), so concurrent requests run side by side instead of queueing behind one another;
long files go through faster-whisper's batched pipeline (VAD chunks decoded in batches).
Decoding (PyAV) and transcription run off the event loop.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

from ray import serve

from deployments.common.identity import PoolIdentity
from deployments.common.model_source import ModelSource
from deployments.stt.config import SttEngineConfig
from deployments.stt.engine import Transcript, TranscriptionOptions, WhisperEngine


@serve.deployment(name="stt")
class TranscriptionDeployment:
    def __init__(self, identity: PoolIdentity, model: ModelSource, engine: SttEngineConfig):
        self.identity = identity
        self.config = engine
        self.engine = WhisperEngine(model.resolve(), engine)
        self._workers = ThreadPoolExecutor(
            max_workers=engine.num_workers, thread_name_prefix="whisper"
        )

    async def transcribe(self, data: bytes, options: TranscriptionOptions) -> Transcript:
        loop = asyncio.get_running_loop()
        audio = await asyncio.to_thread(self.engine.decode, data)
        self.engine.check(audio, options)
        return await loop.run_in_executor(self._workers, self.engine.transcribe, audio, options)

    def runtime(self) -> dict[str, str | None]:
        """Where this replica really runs (after any CUDA fallback)."""
        return {
            "device": self.engine.device,
            "compute_type": self.engine.compute_type,
            "fallback_reason": self.engine.fallback_reason,
        }
