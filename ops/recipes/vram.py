"""Device-memory estimate of an LLM recipe: weights + KV cache + runtime overhead, per GPU.

KV cache bytes per token = 2 (K and V) x layers x kv_heads x head_dim x dtype bytes; e.g.
Llama-3-8B in bf16: 2 * 32 * 8 * 128 * 2 B = 128 KiB per token. The recipe's worst case is
max_num_seqs full sequences of max_model_len tokens; a working set (concurrent sequences x
typical context) is what the cache really has to hold for good prefix reuse.
"""

from __future__ import annotations

from dataclasses import dataclass

from recipes.engines import LLMEngineConfig
from recipes.schema import Recipe

GIB = 1024**3
KV_DTYPE_BYTES = {"auto": None, "fp8": 1, "fp8_e4m3": 1, "fp8_e5m2": 1}
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
# CUDA context, activations at max_num_batched_tokens, CUDA graphs, sampler buffers: measured
# 2-4 GiB for 8B-class models on vLLM; 3 GiB is the planning figure.
DEFAULT_OVERHEAD_GIB = 3.0


@dataclass
class VramEstimate:
    recipe: str
    tensor_parallel: int
    weights_gib: float
    kv_bytes_per_token: int
    kv_worst_case_gib: float
    overhead_gib: float
    per_gpu_gib: float
    budget_gib: float | None  # memory x gpu_memory_utilization, per GPU

    @property
    def fits(self) -> bool:
        return self.budget_gib is None or self.per_gpu_gib <= self.budget_gib

    def kv_budget_tokens(self) -> int | None:
        """Tokens of KV cache the budget leaves after weights and overhead (whole engine)."""
        if self.budget_gib is None:
            return None
        per_gpu_left = self.budget_gib - self.weights_gib / self.tensor_parallel - self.overhead_gib
        return max(0, int(per_gpu_left * self.tensor_parallel * GIB / self.kv_bytes_per_token))

    def working_set_gib(self, sequences: int, context_tokens: int) -> float:
        return sequences * context_tokens * self.kv_bytes_per_token / GIB


def kv_dtype_bytes(recipe: Recipe) -> int:
    engine = recipe.engine
    explicit = KV_DTYPE_BYTES.get(engine.kv_cache_dtype)  # type: ignore[union-attr]
    if explicit:
        return explicit
    return DTYPE_BYTES.get(engine.dtype, 2)  # type: ignore[union-attr]


def estimate(recipe: Recipe) -> VramEstimate | None:
    """None for recipes that are not vLLM engines with a declared architecture."""
    arch = recipe.model.architecture
    if not isinstance(recipe.engine, LLMEngineConfig) or arch is None:
        return None
    engine = recipe.engine
    tp = engine.tensor_parallel_size
    weights_gib = arch.params_billion * 1e9 * arch.weight_bytes_per_param / GIB
    kv_per_token = 2 * arch.num_layers * arch.num_kv_heads * arch.head_dim * kv_dtype_bytes(recipe)
    kv_worst = engine.max_num_seqs * engine.max_model_len * kv_per_token / GIB
    budget = None
    if recipe.hardware.memory_gib is not None and engine.device == "cuda":
        budget = recipe.hardware.memory_gib * engine.gpu_memory_utilization
    overhead = arch.overhead_gib if arch.overhead_gib is not None else DEFAULT_OVERHEAD_GIB
    return VramEstimate(
        recipe=recipe.ref,
        tensor_parallel=tp,
        weights_gib=weights_gib,
        kv_bytes_per_token=kv_per_token,
        kv_worst_case_gib=kv_worst,
        overhead_gib=overhead,
        per_gpu_gib=(weights_gib + kv_worst) / tp + overhead,
        budget_gib=budget,
    )


def describe(est: VramEstimate, sequences: int | None, context: int | None) -> str:
    lines = [
        f"{est.recipe} (tensor parallel {est.tensor_parallel})",
        f"  weights           {est.weights_gib:8.2f} GiB",
        f"  KV per token      {est.kv_bytes_per_token / 1024:8.1f} KiB",
        f"  KV worst case     {est.kv_worst_case_gib:8.2f} GiB  (max_num_seqs x max_model_len)",
        f"  runtime overhead  {est.overhead_gib:8.2f} GiB per GPU",
        f"  per GPU           {est.per_gpu_gib:8.2f} GiB",
    ]
    if est.budget_gib is not None:
        verdict = "fits" if est.fits else "DOES NOT FIT"
        lines.append(f"  budget per GPU    {est.budget_gib:8.2f} GiB  -> {verdict}")
        lines.append(f"  KV budget         {est.kv_budget_tokens():>8,} tokens")
    if sequences and context:
        need = est.working_set_gib(sequences, context)
        lines.append(
            f"  working set       {need:8.2f} GiB  ({sequences} sequences x {context} tokens)"
        )
        budget_tokens = est.kv_budget_tokens()
        if budget_tokens is not None:
            lines.append(
                f"  cache headroom    {budget_tokens / (sequences * context):8.2f} x the working "
                "set (the rest keeps shared prefixes cached)"
            )
    return "\n".join(lines)
