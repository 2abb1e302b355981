"""Ray Serve deployment for an LLM pool: one vLLM engine per replica, streamed to the ingress.

Every call is a generator (the ingress holds a streaming handle): a streamed request yields
vLLM's SSE lines as they come, a unary one yields its single JSON body. Errors vLLM reports
before generating (prompt over the context, bad parameters) are raised before the first item,
so the ingress still answers them with a 4xx status.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
from collections.abc import AsyncIterator
from typing import Any

from ray import serve

from deployments.common.ports import bind_replica_grpc_to_node
from deployments.contract import CallContext, TokenCounts
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

# Streamed SSE lines that are ready together cross the DeploymentHandle hop as one item: each
# item is one Ray object reported to the ingress, the hop's per-chunk cost. After the first line
# (always sent at once, for TTFT), lines that vLLM has ready within this many ms of each other
# are joined (0: only those ready at once, e.g. a request's last token, usage and [DONE], which
# vLLM emits back to back; negative: every line on its own, as before).
STREAM_COALESCE_MS = float(os.environ.get("PLATFORM_LLM_STREAM_COALESCE_MS", "0"))


@serve.deployment(name="llm")
class LLMDeployment:
    """Implements deployments.contract.LLMPool."""

    async def __init__(self, identity: PoolIdentity, model: ModelSource, engine: LLMEngineConfig):
        bind_replica_grpc_to_node()
        import ray

        self.coalesce_ms = STREAM_COALESCE_MS
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
    ) -> AsyncIterator[str | dict[str, Any] | TokenCounts]:
        async for item in self._generate(self.engine.chat, body, call):
            yield item

    async def completion(
        self, body: dict[str, Any], call: CallContext
    ) -> AsyncIterator[str | dict[str, Any] | TokenCounts]:
        async for item in self._generate(self.engine.completion, body, call):
            yield item

    async def _generate(self, run, body: dict[str, Any], call: CallContext):
        with (
            self.telemetry.request(call.request_id),
            span("llm.generate", model=self.identity.model, stream=bool(body.get("stream"))) as s,
        ):
            finished: list[RequestRecord] = []
            result = await run(body, call, finished)
            first = True
            async for item in _items(result, self.coalesce_ms):
                if first:
                    s.add_event("first_token")
                    first = False
                yield item
            yield TokenCounts(
                prompt_tokens=sum(r.prompt_tokens for r in finished),
                completion_tokens=sum(r.generated_tokens for r in finished),
                cached_tokens=sum(r.cached_tokens for r in finished),
            )

    def recent_requests(self, limit: int = 100) -> list[RequestRecord]:
        return list(self.recent)[-limit:]

    async def stream_coalescing(self, ms: float | None = None) -> float:
        """The coalescing window of streamed lines (ms; negative: off); sets it when given (for
        A/B measurements on a running replica, ops/gpu/fair.py `coalesce`)."""
        if ms is not None:
            self.coalesce_ms = float(ms)
        return self.coalesce_ms

    async def engine_load(self) -> dict[str, int]:
        """Requests the engine holds now (running + waiting), for tests and operators."""
        return {"unfinished": self.engine.engine.output_processor.get_num_unfinished_requests()}

    async def check_health(self) -> None:
        await self.engine.check_health()

    def __del__(self) -> None:
        engine = getattr(self, "engine", None)
        if engine is not None:
            engine.shutdown()


async def _items(
    result: AsyncIterator[str] | dict[str, Any], coalesce_ms: float = -1.0
) -> AsyncIterator[Any]:
    if isinstance(result, dict):
        yield result
        return
    try:
        if coalesce_ms < 0:
            async for line in result:
                yield line
        else:
            async for joined in coalesce(result, coalesce_ms / 1000):
                yield joined
    finally:
        # A cancelled call (the client went away) closes vLLM's stream now, which aborts the
        # engine request instead of leaving it to decode for nobody.
        await result.aclose()  # type: ignore[union-attr]


async def coalesce(lines: AsyncIterator[str], window_s: float) -> AsyncIterator[str]:
    """Yield the first line alone, then each run of lines that arrive within `window_s` of the
    run's first line, joined (SSE events concatenate into one valid SSE byte stream).

    One read of the source is always in flight as a task, so lines that are already produced
    (vLLM yields a request's last chunk, its usage and [DONE] without waiting in between) are
    collected after one event-loop turn instead of costing a handle item each."""
    source = aiter(lines)
    loop = asyncio.get_running_loop()
    pending: asyncio.Future | None = None
    try:
        try:
            yield await anext(source)
        except StopAsyncIteration:
            return
        pending = asyncio.ensure_future(anext(source))
        while True:
            try:
                batch = [await pending]  # the first line of the next run
            except StopAsyncIteration:
                return
            deadline = loop.time() + window_s
            finished = False
            while True:
                pending = asyncio.ensure_future(anext(source))
                # one event-loop turn at least (window 0), at most until the window ends
                await asyncio.wait((pending,), timeout=max(0.0, deadline - loop.time()))
                if not pending.done():
                    break  # still in flight: it starts the next run
                try:
                    batch.append(pending.result())
                except StopAsyncIteration:
                    finished = True
                    break
            yield "".join(batch) if len(batch) > 1 else batch[0]
            if finished:
                return
    finally:
        if pending is not None and not pending.done():
            pending.cancel()
            with contextlib.suppress(BaseException):
                await pending


def _vllm_version() -> str:
    from deployments.llm.vllm_compat import vllm_version

    return vllm_version()
