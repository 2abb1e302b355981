"""Ray Serve deployment for embeddings: tokenizes once, batches inputs across calls (and across
Gateway replicas), and answers float32 arrays with token counts."""

from __future__ import annotations

import asyncio

import numpy as np
from ray import serve

from deployments.common.batching import SlotBatcher, chunked, group_size, run_flat_batch
from deployments.common.errors import InvalidRequest, ServingError
from deployments.common.ports import bind_replica_grpc_to_node
from deployments.contract import EmbedCall, Embeddings
from deployments.embeddings.engine import EmbeddingEngine, reduce_dimensions
from recipes.engines import EmbeddingEngineConfig
from recipes.model_source import ModelSource
from telemetry.identity import PoolIdentity
from telemetry.pool import PoolTelemetry
from telemetry.tracing import span

Group = tuple[list[list[int]], float]  # one call's token ids, and when the Gateway received it


@serve.deployment(name="embeddings")
class EmbeddingDeployment:
    """Implements deployments.contract.EmbeddingPool."""

    def __init__(self, identity: PoolIdentity, model: ModelSource, engine: EmbeddingEngineConfig):
        bind_replica_grpc_to_node()
        self.identity = identity
        self.config = engine
        self.telemetry = PoolTelemetry(identity)
        self.engine = EmbeddingEngine(model.resolve(), engine)
        self._encoder = SlotBatcher(self._encode_many, engine.batch, group_size)
        self.telemetry.ready()

    async def _encode_many(self, groups: list[Group]) -> list[np.ndarray]:
        return await run_flat_batch(groups, self.engine.encode_ids, self.telemetry)

    async def embed(self, calls: list[EmbedCall]) -> list[Embeddings | ServingError]:
        # The texts of every call are tokenized in one tokenizer call, off the event loop.
        texts = [t for c in calls if _is_text(c) for t in c.inputs]
        token_ids = iter(await asyncio.to_thread(self.engine.tokenize, texts) if texts else ())
        per_call = [[next(token_ids) for _ in c.inputs] if _is_text(c) else c.inputs for c in calls]
        pending = (self._embed_one(c, ids) for c, ids in zip(calls, per_call, strict=True))
        return list(await asyncio.gather(*pending))

    async def _embed_one(self, call: EmbedCall, ids: list[list[int]]) -> Embeddings | ServingError:
        try:
            with (
                self.telemetry.request(call.context.request_id),
                span("embeddings.embed", model=self.identity.model),
            ):
                return await self._embed(call, ids)
        except ServingError as exc:  # refuses this call alone
            return exc

    async def _embed(self, call: EmbedCall, ids: list[list[int]]) -> Embeddings:
        if call.dimensions is not None and call.dimensions > self.engine.dimensions:
            raise InvalidRequest(
                f"dimensions={call.dimensions} exceeds this model's {self.engine.dimensions}",
                param="dimensions",
            )
        truncate = self.config.truncate if call.truncate is None else call.truncate
        if not _is_text(call):
            self.engine.check_token_ids(ids)
        tokens = self.engine.check_lengths([len(x) for x in ids], truncate)
        if truncate and any(len(x) > self.engine.max_input_tokens for x in ids):
            ids = await self._truncated(call, ids)
        pieces = chunked(ids, self.config.batch.max_batch_size)
        arrival = call.context.arrival
        parts = await asyncio.gather(*(self._encoder.submit((p, arrival)) for p in pieces))
        self.telemetry.items("texts", len(ids))
        self.telemetry.items("input_tokens", sum(tokens))
        vectors = reduce_dimensions(np.concatenate(parts), call.dimensions, self.config.normalize)
        return Embeddings(vectors=vectors, prompt_tokens=sum(tokens))

    async def _truncated(self, call: EmbedCall, ids: list[list[int]]) -> list[list[int]]:
        """Over-long inputs cut to the model's limit (text keeps its closing special tokens)."""
        limit = self.engine.max_input_tokens
        if not _is_text(call):
            return [x[:limit] for x in ids]
        long = [i for i, x in enumerate(ids) if len(x) > limit]
        cut = await asyncio.to_thread(self.engine.tokenize, [call.inputs[i] for i in long], True)
        ids = list(ids)
        for i, x in zip(long, cut, strict=True):
            ids[i] = x
        return ids


def _is_text(call: EmbedCall) -> bool:
    return isinstance(call.inputs[0], str)
