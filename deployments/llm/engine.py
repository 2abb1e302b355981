"""What runs an LLM: vLLM's AsyncLLM with vLLM's own OpenAI serving layer on top.

The OpenAI semantics (chat templates, sampling parameters, stop strings, n, logprobs, tool
parsers, usage, SSE framing) are vLLM's own: this adapter builds them exactly as `vllm serve`
does, from the recipe's engine section, so a response here equals vLLM's server's response.
What it adds: one place that turns recipe fields into vLLM flags, placement-group hand-off,
and a per-request record taken from vLLM's request metrics.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from deployments.common.errors import InvalidRequest, ServingError, error_for_status
from deployments.contract import CallContext
from deployments.llm import vllm_compat
from deployments.llm.start_lock import engine_start_lock, gpu_key
from recipes.engines import LLMEngineConfig

logger = logging.getLogger("ray.serve")


def engine_cli_args(model_dir: Path, served_name: str, cfg: LLMEngineConfig) -> list[str]:
    """The recipe's engine section as `vllm serve` flags (parsed by vLLM's own parser): the
    fields the platform models, then every `engine_kwargs` entry as its flag."""
    args = [
        "--model", str(model_dir),
        "--served-model-name", served_name,
        "--max-model-len", str(cfg.max_model_len),
        "--max-num-seqs", str(cfg.max_num_seqs),
        "--gpu-memory-utilization", str(cfg.gpu_memory_utilization),
        "--tensor-parallel-size", str(cfg.tensor_parallel_size),
        "--dtype", cfg.dtype,
        "--kv-cache-dtype", cfg.kv_cache_dtype,
        "--load-format", cfg.load_format,
        "--enable-prefix-caching" if cfg.enable_prefix_caching else "--no-enable-prefix-caching",
    ]  # fmt: skip
    if cfg.stream_interval > 1:
        args += ["--stream-interval", str(cfg.stream_interval)]
    if cfg.tool_call_parser:
        args += ["--tool-call-parser", cfg.tool_call_parser, "--enable-auto-tool-choice"]
    if cfg.reasoning_parser:
        args += ["--reasoning-parser", cfg.reasoning_parser]
    if cfg.chat_template:
        args += ["--chat-template", str(cfg.chat_template_file())]
    for key, value in sorted(cfg.engine_kwargs.items()):
        flag = "--" + key.replace("_", "-")
        if value is True:
            args.append(flag)
        elif value is False:
            args.append("--no-" + key.replace("_", "-"))
        else:
            args += [flag, value if isinstance(value, str) else _json(value)]
    return args


def _json(value: Any) -> str:
    import json

    return json.dumps(value) if isinstance(value, dict | list) else str(value)


# The call a generate() belongs to: set by the deployment around the serving call, read when
# vLLM's serving layer calls engine.generate (synchronously, inside that call).
CURRENT_CALL: contextvars.ContextVar[CallContext | None] = contextvars.ContextVar(
    "current_call", default=None
)
# Where the records of that call's finished engine requests go too (set with CURRENT_CALL).
CURRENT_SINK: contextvars.ContextVar[list | None] = contextvars.ContextVar(
    "current_sink", default=None
)


@dataclass
class RequestRecord:
    """One finished engine request, from vLLM's own request metrics (times in seconds)."""

    request_id: str
    platform_request_id: str | None
    prompt_tokens: int
    generated_tokens: int
    cached_tokens: int
    queue_s: float | None = None  # ingress arrival -> first scheduled in the engine
    ttft_s: float | None = None  # engine arrival -> first token
    tpot_s: float | None = None  # (last token - first token) / (generated - 1)
    finished: str | None = None


class ObservedEngineClient:
    """vLLM's engine client with every finished RequestOutput turned into a RequestRecord.

    Everything else is delegated, so vLLM's serving classes use it as the engine itself.
    """

    def __init__(self, engine: Any, on_finished: Callable[[RequestRecord], None]):
        self._engine = engine
        self._on_finished = on_finished

    def __getattr__(self, name: str) -> Any:
        return getattr(self._engine, name)

    def generate(self, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        outputs = self._engine.generate(*args, **kwargs)
        return self._observe(outputs, CURRENT_CALL.get(), CURRENT_SINK.get())

    async def _observe(
        self, outputs: AsyncIterator[Any], call: CallContext | None, sink: list | None
    ):
        async for output in outputs:
            if output.finished:
                record = _record_of(output, call)
                self._on_finished(record)
                if sink is not None:
                    sink.append(record)
            yield output


def _record_of(output: Any, call: CallContext | None) -> RequestRecord:
    # A streamed request's outputs are deltas (its last one holds the last tokens only): the
    # engine's own count, where it has one, is the whole generation.
    generated = sum(len(c.token_ids) for c in output.outputs)
    stats = getattr(output, "metrics", None)
    generated = max(generated, int(getattr(stats, "num_generation_tokens", 0) or 0))
    record = RequestRecord(
        request_id=output.request_id,
        platform_request_id=call.request_id if call else None,
        prompt_tokens=len(output.prompt_token_ids or ()),
        generated_tokens=generated,
        cached_tokens=int(output.num_cached_tokens or 0),
        finished=output.outputs[0].finish_reason if output.outputs else None,
    )
    # Engine-core timestamps are monotonic and share one clock, so differences are exact; the
    # frontend arrival is wall-clock, comparable with the ingress's arrival on this host.
    if stats is not None and getattr(stats, "queued_ts", 0):
        if stats.scheduled_ts:
            hop = max(0.0, stats.arrival_time - call.arrival) if call else 0.0
            record.queue_s = hop + max(0.0, stats.scheduled_ts - stats.queued_ts)
        if stats.first_token_ts:
            record.ttft_s = stats.first_token_latency or (stats.first_token_ts - stats.queued_ts)
        n = stats.num_generation_tokens
        if n > 1 and stats.last_token_ts and stats.first_token_ts:
            record.tpot_s = (stats.last_token_ts - stats.first_token_ts) / (n - 1)
    return record


class VLLMEngine:
    """AsyncLLM plus vLLM's OpenAI chat and completion serving objects."""

    def __init__(self, engine: Any, state: Any, served_name: str, args: Any):
        self.engine = engine
        self.state = state
        self.served_name = served_name
        self.args = args
        self.max_model_len = engine.model_config.max_model_len
        self._error_response = vllm_compat.error_response_class()
        self._chat_request = vllm_compat.chat_request_class()
        self._completion_request = vllm_compat.completion_request_class()
        self._client_errors = vllm_compat.client_error_types()

    @classmethod
    async def start(
        cls,
        model_dir: Path,
        served_name: str,
        cfg: LLMEngineConfig,
        on_finished: Callable[[RequestRecord], None],
        placement_group: Any = None,
        stat_loggers: list[Any] | None = None,
    ) -> VLLMEngine:
        from starlette.datastructures import State
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.usage.usage_lib import UsageContext
        from vllm.v1.engine.async_llm import AsyncLLM

        if cfg.cpu_kvcache_space_gib is not None:
            os.environ["VLLM_CPU_KVCACHE_SPACE"] = str(cfg.cpu_kvcache_space_gib)
        args = vllm_compat.make_arg_parser().parse_args(
            engine_cli_args(model_dir, served_name, cfg)
        )
        engine_args = AsyncEngineArgs.from_cli_args(args)
        vllm_config = engine_args.create_engine_config(usage_context=UsageContext.OPENAI_API_SERVER)
        if placement_group is not None:
            # Tensor-parallel workers go into the replica's own placement group (as Ray Serve
            # LLM does), so the bundles the recipe rendered are the GPUs the engine uses.
            vllm_config.parallel_config.placement_group = placement_group
        # Engines sharing a GPU profile its memory one at a time (see start_lock); tensor-parallel
        # engines own whole GPUs through their placement group and need no lock.
        shares_gpu = cfg.device == "cuda" and placement_group is None
        async with engine_start_lock(gpu_key()) if shares_gpu else contextlib.nullcontext():
            engine = AsyncLLM.from_vllm_config(
                vllm_config=vllm_config,
                usage_context=UsageContext.OPENAI_API_SERVER,
                stat_loggers=stat_loggers,
                enable_log_requests=False,
                disable_log_stats=False,
            )
        observed = ObservedEngineClient(engine, on_finished)
        state = State()
        await vllm_compat.init_app_state_fn()(
            observed, state, args, supported_tasks=await engine.get_supported_tasks()
        )
        return cls(observed, state, served_name, args)

    # -- requests -----------------------------------------------------------------------------

    async def chat(
        self, body: dict[str, Any], call: CallContext | None = None, sink: list | None = None
    ) -> AsyncIterator[str] | dict[str, Any]:
        serving = self.state.openai_serving_chat
        return await self._serve(
            serving, serving.create_chat_completion, self._chat_request, body, call, sink
        )

    async def completion(
        self, body: dict[str, Any], call: CallContext | None = None, sink: list | None = None
    ) -> AsyncIterator[str] | dict[str, Any]:
        serving = self.state.openai_serving_completion
        return await self._serve(
            serving, serving.create_completion, self._completion_request, body, call, sink
        )

    async def _serve(
        self,
        serving: Any,
        create: Callable[..., Any],
        request_class: type,
        body: dict[str, Any],
        call: CallContext | None,
        sink: list | None = None,
    ) -> AsyncIterator[str] | dict[str, Any]:
        """Validate the body as vLLM's request, run it with the call's context visible to the
        engine client, and turn a refusal into vLLM's own error response. The records of the
        engine requests it runs are appended to `sink` as they finish."""
        request = self._parse(request_class, body)
        token, sink_token = CURRENT_CALL.set(call), CURRENT_SINK.set(sink)
        try:
            result = await create(request, None)
        except self._client_errors as e:
            result = serving.create_error_response(e)
        finally:
            CURRENT_CALL.reset(token)
            CURRENT_SINK.reset(sink_token)
        return self._result(result)

    def _parse(self, request_class: type, body: dict[str, Any]) -> Any:
        try:
            return request_class.model_validate({**body, "model": self.served_name})
        except ValidationError as e:
            first = e.errors()[0]
            param = ".".join(str(p) for p in first.get("loc", ())) or None
            message = first.get("msg", "invalid request").removeprefix("Value error, ")
            raise InvalidRequest(f"{param}: {message}" if param else message, param=param) from None
        except self._client_errors as e:
            # vLLM's own checks (`tools: []`, an empty prompt) raise their error class from
            # inside the model's validators, not as a pydantic ValidationError
            message = str(e.args[0]) if e.args else str(e)
            raise InvalidRequest(message, param=getattr(e, "parameter", None)) from None

    def _result(self, result: Any) -> AsyncIterator[str] | dict[str, Any]:
        if isinstance(result, self._error_response):
            info = result.error
            status = info.code if isinstance(info.code, int) else 400
            raise error_for_status(status, info.message, param=info.param)
        if hasattr(result, "model_dump"):
            return result.model_dump(mode="json")
        return result  # an async generator of SSE lines ("data: {...}\n\n")

    # -- lifecycle ----------------------------------------------------------------------------

    async def check_health(self) -> None:
        try:
            await self.engine.check_health()
        except Exception as e:
            raise ServingError(f"vLLM engine is unhealthy: {e}") from e

    def shutdown(self) -> None:
        try:
            self.engine.shutdown()
        except Exception:  # already gone
            logger.debug("engine shutdown raised", exc_info=True)
