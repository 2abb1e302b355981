"""The Gateway's side of the contract with the pools: one typed client per pool kind, and the
table of engine kinds (which deployment runs a kind, which client calls it).

A client is built once per pool: its handles (the streaming one included) are configured here,
not per request. It owns admission (the pool's queue limit -> 429), the request timeout (504)
and unwrapping errors that crossed the handle hop. Embedding and rerank clients coalesce
concurrent small requests into one handle call (the recipe's `engine.coalesce`), so the per-call
cost of the hop is paid once per batch instead of once per request.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

from ray.exceptions import NodeDiedError, RayActorError, RayTaskError, WorkerCrashedError
from ray.serve.exceptions import (
    BackPressureError,
    DeploymentUnavailableError,
    ReplicaUnavailableError,
)
from ray.serve.handle import DeploymentHandle

from deployments.common.batching import SlotBatcher
from deployments.common.errors import EngineUnavailable, Overloaded, RequestTimeout, ServingError
from deployments.contract import (
    CallContext,
    EmbedCall,
    Embeddings,
    RerankCall,
    Scores,
    Transcript,
    TranscriptDelta,
    TranscriptionOptions,
)
from recipes.engines import BatchConfig, EngineKind
from recipes.schema import RecipeSpec

# A replica (or its node) that died or cannot be reached: the request may be retried
# elsewhere, so the client gets 503 + Retry-After, never Ray's own exception.
REPLICA_LOST = (
    RayActorError,
    WorkerCrashedError,
    NodeDiedError,
    ReplicaUnavailableError,
    DeploymentUnavailableError,
)


class PoolClient:
    def __init__(self, spec: RecipeSpec, handle: DeploymentHandle):
        self.spec = spec
        self.timeout_s = spec.deployment.request_timeout_s
        self.unavailable_reason: str | None = None
        """Set by the Gateway's replica watcher while the pool has no running replica."""
        self.running_replicas = 1

    def replicas_running(self, count: int) -> None:
        """The replica watcher's count of the pool's running replicas."""
        self.running_replicas = count

    def check_available(self) -> None:
        """Fail fast (503) while the pool has no running replica instead of queueing the
        request until one returns (a lost node may never come back)."""
        if self.unavailable_reason is not None:
            raise self.unavailable(self.unavailable_reason)

    def unavailable(self, reason: str) -> EngineUnavailable:
        return EngineUnavailable(
            f"Pool '{self.spec.id}' of model '{self.spec.model.name}' is unavailable: "
            f"{reason}; retry later",
            retry_after_s=self.spec.deployment.retry_after_s,
        )

    def translate(self, exc: BaseException) -> BaseException:
        """The error the client should see for an exception raised by a handle call."""
        if isinstance(exc, RayTaskError):
            # Ray re-raises a replica's exception as a class deriving from both RayTaskError
            # and the original; its `cause` is the original object, with every attribute intact.
            cause = getattr(exc, "cause", None)
            if isinstance(cause, ServingError):
                return cause
        if isinstance(exc, ServingError):
            return exc
        if isinstance(exc, BackPressureError):
            return self.overloaded()
        if isinstance(exc, REPLICA_LOST):
            return self.unavailable(f"its replica was lost ({type(exc).__name__})")
        return exc

    def overloaded(self) -> Overloaded:
        dep = self.spec.deployment
        return Overloaded(
            f"Pool '{self.spec.id}' ({self.spec.profile}) of model '{self.spec.model.name}' is "
            f"at its queue limit ({dep.max_queued_requests} waiting); retry later",
            retry_after_s=dep.retry_after_s,
        )

    @contextlib.contextmanager
    def _awaiting(self, call: Any, silence: str) -> Iterator[None]:
        """What waiting on a handle call turns into: the client leaving or the request timeout
        cancels the call in the replica too; an error from across the hop is translated."""
        try:
            yield
        except asyncio.CancelledError:
            call.cancel()  # the client left: the replica stops this call too
            raise
        except TimeoutError:
            call.cancel()
            raise RequestTimeout(
                f"Pool '{self.spec.id}' {silence} within {self.timeout_s:g}s"
            ) from None
        except Exception as exc:
            raise self.translate(exc) from None

    async def unary(self, response: Any) -> Any:
        """Await one unary handle call within the pool's request timeout."""
        with self._awaiting(response, "did not answer"):
            return await asyncio.wait_for(_resolve(response), self.timeout_s)

    async def stream(self, generator: Any) -> AsyncIterator[Any]:
        """Await a streaming handle call's first item within the request timeout (so errors
        found before the first item become a status code), then the rest as they come."""
        with self._awaiting(generator, "sent nothing"):
            try:
                first = await asyncio.wait_for(generator.__anext__(), self.timeout_s)
            except StopAsyncIteration:
                return _empty()
        return _rest(first, generator)


async def _resolve(response: Any) -> Any:
    return await response


class CoalescingClient(PoolClient):
    """Sends concurrent calls to the pool as one handle call (outcomes come back per call).

    With `batch_wait_timeout_s` 0 a lone request goes at once; under load, requests that
    arrive while `max_concurrent_batches` calls are in flight wait and leave together (a
    request larger than `max_batch_size` items goes in a call of its own). The
    `max_concurrent_batches` counts per running replica: a pool that scales out gets
    proportionally more calls, and an autoscaling pool sees its demand (a fixed cap would hold
    each replica's ongoing calls at or below the autoscaler's target, so it never scales). The
    Gateway holds at most the pool's capacity (replicas x max_ongoing_requests) plus its
    queue limit in requests; beyond that it answers 429, as the handle would.
    """

    def __init__(self, spec: RecipeSpec, handle: DeploymentHandle, method: DeploymentHandle):
        super().__init__(spec, handle)
        self._call = method
        config: BatchConfig | None = spec.engine.coalesce  # type: ignore[union-attr]
        self._coalescer = SlotBatcher(self._send, config, self.size) if config else None
        dep = spec.deployment
        self._limit = (
            None
            if dep.max_queued_requests < 0
            else dep.autoscaling.max_replicas * dep.max_ongoing_requests + dep.max_queued_requests
        )
        self._admitted = 0

    @staticmethod
    def size(call: Any) -> int:
        raise NotImplementedError

    @property
    def held(self) -> int:
        """Requests admitted and not yet answered."""
        return self._admitted

    def replicas_running(self, count: int) -> None:
        super().replicas_running(count)
        if self._coalescer is not None:
            per_replica = self.spec.engine.coalesce.max_concurrent_batches  # type: ignore[union-attr]
            self._coalescer.slots = per_replica * max(1, count)

    async def _send(self, calls: list[Any]) -> list[Any]:
        return await self.unary(self._call.remote(calls))

    async def submit(self, call: Any) -> Any:
        self.check_available()
        if self._limit is not None and self._admitted >= self._limit:
            raise self.overloaded()
        self._admitted += 1
        try:
            if self._coalescer is not None:
                outcome = await self._coalescer.submit(call)
            else:
                (outcome,) = await self._send([call])
        finally:
            self._admitted -= 1
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome


class EmbeddingClient(CoalescingClient):
    def __init__(self, spec: RecipeSpec, handle: DeploymentHandle):
        super().__init__(spec, handle, handle.embed)

    @staticmethod
    def size(call: EmbedCall) -> int:
        return len(call.inputs)

    async def embed(self, call: EmbedCall) -> Embeddings:
        return await self.submit(call)


class RerankClient(CoalescingClient):
    def __init__(self, spec: RecipeSpec, handle: DeploymentHandle):
        super().__init__(spec, handle, handle.rerank)

    @staticmethod
    def size(call: RerankCall) -> int:
        return len(call.documents)

    async def rerank(self, call: RerankCall) -> Scores:
        return await self.submit(call)


class SpeechClient(PoolClient):
    def __init__(self, spec: RecipeSpec, handle: DeploymentHandle):
        super().__init__(spec, handle)
        self._transcribe = handle.transcribe
        self._transcribe_stream = handle.options(stream=True).transcribe_stream
        self._runtime = handle.runtime

    async def transcribe(
        self, audio: bytes, options: TranscriptionOptions, context: CallContext
    ) -> Transcript:
        self.check_available()
        return await self.unary(self._transcribe.remote(audio, options, context))

    async def transcribe_stream(
        self, audio: bytes, options: TranscriptionOptions, context: CallContext
    ) -> AsyncIterator[TranscriptDelta | Transcript]:
        self.check_available()
        return await self.stream(self._transcribe_stream.remote(audio, options, context))

    async def runtime(self) -> dict[str, Any]:
        """Where one replica of the pool runs (device, compute type, fallback reason)."""
        return await self.unary(self._runtime.remote())


class LLMClient(PoolClient):
    """Generation streams through a streaming handle, unary requests included (their one item
    is the JSON body): the first item is awaited here, so admission errors (429) and request
    errors (400) surface before any response byte is sent."""

    def __init__(self, spec: RecipeSpec, handle: DeploymentHandle):
        super().__init__(spec, handle)
        streaming = handle.options(stream=True)
        self._chat, self._completion = streaming.chat, streaming.completion

    async def chat(self, body: dict[str, Any], context: CallContext) -> AsyncIterator[Any]:
        self.check_available()
        return await self.stream(self._chat.remote(body, context))

    async def completion(self, body: dict[str, Any], context: CallContext) -> AsyncIterator[Any]:
        self.check_available()
        return await self.stream(self._completion.remote(body, context))


async def _empty() -> AsyncIterator[Any]:
    return
    yield


async def _rest(first: Any, generator: Any) -> AsyncIterator[Any]:
    """The stream after its first item. Errors raised here come after the response started:
    the route turns them into an SSE error event (`PoolClient.translate` first)."""
    try:
        yield first
        async for item in generator:
            yield item
    finally:
        # A client that went away cancels the deployment's generator, which aborts the engine.
        generator.cancel()


def _embeddings_deployment() -> Any:
    from deployments.embeddings.deployment import EmbeddingDeployment

    return EmbeddingDeployment


def _rerank_deployment() -> Any:
    from deployments.rerank.deployment import RerankDeployment

    return RerankDeployment


def _speech_deployment() -> Any:
    from deployments.stt.deployment import TranscriptionDeployment

    return TranscriptionDeployment


def _llm_deployment() -> Any:
    from deployments.llm.deployment import LLMDeployment

    return LLMDeployment


@dataclass(frozen=True)
class PoolKind:
    """How the platform runs and calls one engine kind (its tasks: the engine config's)."""

    deployment: Callable[[], Any]
    """The Serve deployment class; imported on use, so the controller never needs vllm or
    faster-whisper to build the application graph."""
    client: type[PoolClient]


POOL_KINDS: dict[EngineKind, PoolKind] = {
    EngineKind.VLLM: PoolKind(_llm_deployment, LLMClient),
    EngineKind.SENTENCE_TRANSFORMERS: PoolKind(_embeddings_deployment, EmbeddingClient),
    EngineKind.SENTENCE_TRANSFORMERS_RERANK: PoolKind(_rerank_deployment, RerankClient),
    EngineKind.FASTER_WHISPER: PoolKind(_speech_deployment, SpeechClient),
}
