"""Ray Serve deployment for rerank: (query, document) pairs batched across calls; answers the
score of each document in the caller's order (the Gateway sorts and shapes the response)."""

from __future__ import annotations

import asyncio

import numpy as np
from ray import serve

from deployments.common.batching import SlotBatcher, chunked, group_size, run_flat_batch
from deployments.common.errors import ServingError
from deployments.common.ports import bind_replica_grpc_to_node
from deployments.contract import RerankCall, Scores
from deployments.rerank.engine import RerankEngine
from recipes.engines import RerankEngineConfig
from recipes.model_source import ModelSource
from telemetry.identity import PoolIdentity
from telemetry.pool import PoolTelemetry
from telemetry.tracing import span

Pair = tuple[str, str]
Group = tuple[list[Pair], float]  # pairs, and when the Gateway received their request


@serve.deployment(name="rerank")
class RerankDeployment:
    """Implements deployments.contract.RerankPool."""

    def __init__(self, identity: PoolIdentity, model: ModelSource, engine: RerankEngineConfig):
        bind_replica_grpc_to_node()
        self.identity = identity
        self.config = engine
        self.telemetry = PoolTelemetry(identity)
        self.engine = RerankEngine(model.resolve(), engine)
        self._scorer = SlotBatcher(self._score_many, engine.batch, group_size)
        self.telemetry.ready()

    async def _score_many(self, groups: list[Group]) -> list[np.ndarray]:
        return await run_flat_batch(groups, self.engine.score, self.telemetry)

    async def rerank(self, calls: list[RerankCall]) -> list[Scores | ServingError]:
        return list(await asyncio.gather(*(self._rerank_one(c) for c in calls)))

    async def _rerank_one(self, call: RerankCall) -> Scores | ServingError:
        try:
            with (
                self.telemetry.request(call.context.request_id),
                span("rerank.rerank", model=self.identity.model),
            ):
                return await self._rerank(call)
        except ServingError as exc:  # refuses this call alone
            return exc

    async def _rerank(self, call: RerankCall) -> Scores:
        truncate = self.config.truncate if call.truncate is None else call.truncate
        tokens = self.engine.check_lengths(call.query, call.documents, truncate)
        pairs = [(call.query, doc) for doc in call.documents]
        pieces = chunked(pairs, self.config.batch.max_batch_size)
        arrival = call.context.arrival
        parts = await asyncio.gather(*(self._scorer.submit((p, arrival)) for p in pieces))
        self.telemetry.items("pairs", len(pairs))
        self.telemetry.items("input_tokens", tokens)
        return Scores(scores=np.concatenate(parts), tokens=tokens)
