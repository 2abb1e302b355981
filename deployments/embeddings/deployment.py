"""Ray Serve deployment for embeddings: validation per request, dynamic batching across requests."""

from __future__ import annotations

import asyncio
import base64
import time

import numpy as np
from ray import serve

from app.protocol.common import Usage
from app.protocol.embeddings import EmbeddingData, EmbeddingRequest, EmbeddingResponse
from deployments.common.batching import chunked, count_items, make_batcher, run_flat_batch
from deployments.common.errors import InvalidRequest
from deployments.common.identity import CallContext, PoolIdentity
from deployments.common.model_source import ModelSource
from deployments.embeddings.config import EmbeddingEngineConfig
from deployments.embeddings.engine import EmbeddingEngine, reduce_dimensions
from telemetry.pool import PoolTelemetry
from telemetry.tracing import span

Chunk = tuple[list[str], float]  # texts, and when the ingress received their request


@serve.deployment(name="embeddings")
class EmbeddingDeployment:
    def __init__(self, identity: PoolIdentity, model: ModelSource, engine: EmbeddingEngineConfig):
        self.identity = identity
        self.config = engine
        self.telemetry = PoolTelemetry(identity)
        self.engine = EmbeddingEngine(model.resolve(), engine)
        self._encode_batched = make_batcher(self._encode_many, engine.batch, count_items)
        self.telemetry.ready()

    async def _encode_many(self, chunks: list[Chunk]) -> list[np.ndarray]:
        return await run_flat_batch(chunks, self.engine.encode, self.telemetry)

    async def embed(self, request: EmbeddingRequest, call: CallContext) -> EmbeddingResponse:
        with self.telemetry.request(call), span("embeddings.embed", model=self.identity.model):
            return await self._embed(request, call)

    async def _embed(self, request: EmbeddingRequest, call: CallContext) -> EmbeddingResponse:
        inputs = request.texts_or_ids()
        if len(inputs) > self.config.max_inputs:
            raise InvalidRequest(
                f"{len(inputs)} inputs in one request; this model takes at most "
                f"{self.config.max_inputs}",
                param="input",
            )
        if request.dimensions is not None and request.dimensions > self.engine.dimensions:
            raise InvalidRequest(
                f"dimensions={request.dimensions} exceeds this model's {self.engine.dimensions}",
                param="dimensions",
            )
        truncate = self.config.truncate if request.truncate is None else request.truncate

        if isinstance(inputs[0], str):
            texts: list[str] = inputs  # type: ignore[assignment]
            counts = self.engine.count_tokens(texts)  # fast (Rust), and keeps one tokenizer user
            tokens = self.engine.check_lengths(counts, truncate)
            pieces = chunked(texts, self.config.batch.max_batch_size)
            vectors = np.concatenate(
                await asyncio.gather(
                    *(self._encode_batched((piece, call.arrival)) for piece in pieces)
                )
            )
        else:
            ids: list[list[int]] = inputs  # type: ignore[assignment]
            tokens = self.engine.check_lengths([len(x) for x in ids], truncate)
            ids = [x[: self.engine.max_input_tokens] for x in ids]
            self.telemetry.queued(call.arrival)
            started = time.perf_counter()
            vectors = await asyncio.to_thread(self.engine.encode_token_ids, ids)
            self.telemetry.batch(len(ids), time.perf_counter() - started)
        self.telemetry.items("texts", len(inputs))
        self.telemetry.items("input_tokens", sum(tokens))

        vectors = reduce_dimensions(vectors, request.dimensions, self.config.normalize)
        return EmbeddingResponse(
            data=[
                EmbeddingData(index=i, embedding=_encode_vector(v, request.encoding_format))
                for i, v in enumerate(vectors)
            ],
            model=self.identity.model,
            usage=Usage(prompt_tokens=sum(tokens), total_tokens=sum(tokens)),
        )


def _encode_vector(vector: np.ndarray, encoding_format: str) -> list[float] | str:
    if encoding_format == "base64":
        # OpenAI's encoding: little-endian float32 bytes, base64 (the official client decodes so).
        return base64.b64encode(vector.astype("<f4").tobytes()).decode("ascii")
    return vector.tolist()
