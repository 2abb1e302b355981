"""Ray Serve deployment for an LLM pool: one vLLM engine per replica, streamed to the ingress.

Every call is a generator (the ingress holds a streaming handle): a streamed request yields
vLLM's SSE lines as they come, a unary one yields its single JSON body. Errors vLLM reports
before generating (prompt over the context, bad parameters) are raised before the first item,
so the ingress still answers them with a 4xx status.
"""

from __future__ import annotations

import collections
import logging
import os
from collections.abc import AsyncIterator
from typing import Any

from ray import serve

from deployments.contract import CallContext
from deployments.llm import vllm_compat
from deployments.llm.engine import RequestRecord, VLLMEngine
from deployments.llm.stats import pool_stat_logger_factory
from recipes.engines import LLMEngineConfig
from recipes.model_source import ModelSource
from telemetry.identity import PoolIdentity
from telemetry.pool import PoolTelemetry
from telemetry.tracing import span

logger = logging.getLogger("ray.serve")

# Finished-request records kept per replica for inspection (the metrics module exports them).
RECENT_RECORDS = 1024


@serve.deployment(name="llm")
class LLMDeployment:
    """Implements deployments.contract.LLMPool."""

    async def __init__(self, identity: PoolIdentity, model: ModelSource, engine: LLMEngineConfig):
        import ray

        self.identity = identity
        self.config = engine
        self.telemetry = PoolTelemetry(identity)
        self.recent: collections.deque[RequestRecord] = collections.deque(maxlen=RECENT_RECORDS)
        placement_group = None
        if engine.device == "cuda" and engine.tensor_parallel_size > 1:
            placement_group = ray.util.get_current_placement_group()
            # vLLM's Ray executor joins the running cluster through RAY_ADDRESS; without it,
            # it would start a private cluster that knows nothing of this placement group.
            os.environ.setdefault("RAY_ADDRESS", ray.get_runtime_context().gcs_address)
        self.engine = await VLLMEngine.start(
            model.resolve(),
            identity.model,
            engine,
            on_finished=self._finished,
            placement_group=placement_group,
            stat_loggers=[
                pool_stat_logger_factory(identity.tags),  # ours, labelled by pool and recipe
                *([vllm_compat.ray_stat_logger()] if engine.engine_metrics else []),  # vLLM's
            ],
        )
        logger.info(
            "vLLM %s serving %s (pool %s, recipe %s), max_model_len=%d",
            _vllm_version(),
            identity.model,
            identity.pool,
            identity.recipe,
            self.engine.max_model_len,
        )
        self.telemetry.ready()

    def _finished(self, record: RequestRecord) -> None:
        self.recent.append(record)
        if record.queue_s is not None:
            self.telemetry.queue_time(record.queue_s)

    async def chat(
        self, body: dict[str, Any], call: CallContext
    ) -> AsyncIterator[str | dict[str, Any]]:
        async for item in self._generate(self.engine.chat, body, call):
            yield item

    async def completion(
        self, body: dict[str, Any], call: CallContext
    ) -> AsyncIterator[str | dict[str, Any]]:
        async for item in self._generate(self.engine.completion, body, call):
            yield item

    async def _generate(self, run, body: dict[str, Any], call: CallContext):
        with (
            self.telemetry.request(call.request_id),
            span("llm.generate", model=self.identity.model, stream=bool(body.get("stream"))) as s,
        ):
            result = await run(body, call)
            first = True
            async for item in _items(result):
                if first:
                    s.add_event("first_token")
                    first = False
                yield item

    def recent_requests(self, limit: int = 100) -> list[RequestRecord]:
        return list(self.recent)[-limit:]

    async def engine_load(self) -> dict[str, int]:
        """Requests the engine holds now (running + waiting), for tests and operators."""
        return {"unfinished": self.engine.engine.output_processor.get_num_unfinished_requests()}

    async def check_health(self) -> None:
        await self.engine.check_health()

    def __del__(self) -> None:
        engine = getattr(self, "engine", None)
        if engine is not None:
            engine.shutdown()


async def _items(result: AsyncIterator[str] | dict[str, Any]) -> AsyncIterator[Any]:
    if isinstance(result, dict):
        yield result
        return
    try:
        async for line in result:
            yield line
    finally:
        # A cancelled call (the client went away) closes vLLM's stream now, which aborts the
        # engine request instead of leaving it to decode for nobody.
        await result.aclose()  # type: ignore[union-attr]


def _vllm_version() -> str:
    from deployments.llm.vllm_compat import vllm_version

    return vllm_version()
