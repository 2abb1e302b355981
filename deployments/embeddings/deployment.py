"""Ray Serve deployment for embeddings: validation per request, dynamic batching across requests."""

from __future__ import annotations

import asyncio
import base64

import numpy as np
from ray import serve

from app.protocol.common import Usage
from app.protocol.embeddings import EmbeddingData, EmbeddingRequest, EmbeddingResponse
from deployments.common.batching import chunked, make_batcher
from deployments.common.errors import InvalidRequest
from deployments.common.identity import PoolIdentity
from deployments.common.model_source import ModelSource
from deployments.embeddings.config import EmbeddingEngineConfig
from deployments.embeddings.engine import EmbeddingEngine, reduce_dimensions


def _count_texts(chunks: list[list[str]]) -> int:
    return sum(len(chunk) for chunk in chunks)


@serve.deployment(name="embeddings")
class EmbeddingDeployment:
    def __init__(self, identity: PoolIdentity, model: ModelSource, engine: EmbeddingEngineConfig):
        self.identity = identity
        self.config = engine
        self.engine = EmbeddingEngine(model.resolve(), engine)
        self._encode_batched = make_batcher(self._encode_many, engine.batch, _count_texts)

    async def _encode_many(self, chunks: list[list[str]]) -> list[np.ndarray]:
        flat = [text for chunk in chunks for text in chunk]
        vectors = await asyncio.to_thread(self.engine.encode, flat)
        out, start = [], 0
        for chunk in chunks:
            out.append(vectors[start : start + len(chunk)])
            start += len(chunk)
        return out

    async def embed(self, request: EmbeddingRequest) -> EmbeddingResponse:
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
                await asyncio.gather(*(self._encode_batched(piece) for piece in pieces))
            )
        else:
            ids: list[list[int]] = inputs  # type: ignore[assignment]
            tokens = self.engine.check_lengths([len(x) for x in ids], truncate)
            ids = [x[: self.engine.max_input_tokens] for x in ids]
            vectors = await asyncio.to_thread(self.engine.encode_token_ids, ids)

        vectors = reduce_dimensions(vectors, request.dimensions, self.config.normalize)
        return EmbeddingResponse(
            data=[
                EmbeddingData(index=i, embedding=_encode_vector(v, request.encoding_format))
                for i, v in enumerate(vectors)
            ],
            model=self.identity.model,
            usage=Usage(prompt_tokens=sum(tokens), total_tokens=sum(tokens)),
        )

    def identity_info(self) -> PoolIdentity:
        return self.identity


def _encode_vector(vector: np.ndarray, encoding_format: str) -> list[float] | str:
    if encoding_format == "base64":
        # OpenAI's encoding: little-endian float32 bytes, base64 (the official client decodes so).
        return base64.b64encode(vector.astype("<f4").tobytes()).decode("ascii")
    return vector.tolist()
