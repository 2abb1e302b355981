"""Ray Serve deployment for rerank: validation per request, (query, document) pairs batched
across requests."""

from __future__ import annotations

import asyncio
import uuid

import numpy as np
from ray import serve

from app.protocol.rerank import (
    RerankDocument,
    RerankRequest,
    RerankResponse,
    RerankResult,
    RerankUsage,
)
from deployments.common.batching import chunked, count_items, make_batcher, run_flat_batch
from deployments.common.errors import InvalidRequest
from deployments.common.identity import CallContext, PoolIdentity
from deployments.common.model_source import ModelSource
from deployments.rerank.config import RerankEngineConfig
from deployments.rerank.engine import RerankEngine
from telemetry.pool import PoolTelemetry
from telemetry.tracing import span

Pair = tuple[str, str]
Group = tuple[list[Pair], float]  # pairs, and when the ingress received their request


@serve.deployment(name="rerank")
class RerankDeployment:
    def __init__(self, identity: PoolIdentity, model: ModelSource, engine: RerankEngineConfig):
        self.identity = identity
        self.config = engine
        self.telemetry = PoolTelemetry(identity)
        self.engine = RerankEngine(model.resolve(), engine)
        self._score_batched = make_batcher(self._score_many, engine.batch, count_items)
        self.telemetry.ready()

    async def _score_many(self, groups: list[Group]) -> list[np.ndarray]:
        return await run_flat_batch(groups, self.engine.score, self.telemetry)

    async def rerank(self, request: RerankRequest, call: CallContext) -> RerankResponse:
        with self.telemetry.request(call), span("rerank.rerank", model=self.identity.model):
            return await self._rerank(request, call)

    async def _rerank(self, request: RerankRequest, call: CallContext) -> RerankResponse:
        documents = request.document_texts()
        if len(documents) > self.config.max_documents:
            raise InvalidRequest(
                f"{len(documents)} documents in one request; this model takes at most "
                f"{self.config.max_documents}",
                param="documents",
            )
        truncate = self.config.truncate if request.truncate is None else request.truncate
        tokens = self.engine.check_lengths(request.query, documents, truncate)
        pairs = [(request.query, doc) for doc in documents]
        pieces = chunked(pairs, self.config.batch.max_batch_size)
        parts = await asyncio.gather(*(self._score_batched((p, call.arrival)) for p in pieces))
        self.telemetry.items("pairs", len(pairs))
        self.telemetry.items("input_tokens", tokens)
        scores = np.concatenate(parts)
        # Stable sort: equal scores keep the client's document order.
        order = sorted(range(len(documents)), key=lambda i: -float(scores[i]))
        if request.top_n is not None:
            order = order[: request.top_n]
        results = [
            RerankResult(
                index=i,
                relevance_score=float(scores[i]),
                document=RerankDocument(text=documents[i]) if request.return_documents else None,
            )
            for i in order
        ]
        return RerankResponse(
            id=f"rerank-{uuid.uuid4().hex}",
            model=self.identity.model,
            results=results,
            usage=RerankUsage(total_tokens=tokens),
        )
