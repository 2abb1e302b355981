"""An in-process target: the recipe's vLLM engine called directly in the load generator's own
process (no HTTP, no Ray), to measure what the platform's hops add on top of the engine.

It is the same adapter the LLM deployment uses (deployments/llm/engine.py), so the difference
between the two is exactly the ingress, the proxy and the DeploymentHandle hop.
"""

from __future__ import annotations

import time
from typing import Any

from deployments.llm.engine import VLLMEngine
from ops.loadgen.metrics import RequestRecord
from ops.loadgen.runner import Send, _usage, on_sse_line
from ops.loadgen.scenario import Profile


async def start_engine(recipe_ref: str, gpu_memory_utilization: float | None = None) -> VLLMEngine:
    from recipes.loader import load_recipe

    recipe = load_recipe(recipe_ref)
    engine = recipe.engine
    if gpu_memory_utilization is not None:
        engine = engine.model_copy(update={"gpu_memory_utilization": gpu_memory_utilization})
    return await VLLMEngine.start(
        recipe.model.source.resolve(), recipe.model.name, engine, on_finished=lambda _: None
    )


def inprocess_sender(engine: VLLMEngine) -> Send:
    async def send(
        profile: Profile, path: str, body: dict[str, Any], in_tokens: int, out_tokens: int
    ) -> RequestRecord:
        start = time.perf_counter()
        record = RequestRecord(profile=profile.name, send=start, end=start, status=200)
        record.input_tokens = in_tokens
        run = engine.chat if path.endswith("chat/completions") else engine.completion
        try:
            result = await run(body)
            if isinstance(result, dict):
                record.chunks.append(time.perf_counter())
                _usage(result, record)
            else:
                async for line in result:
                    on_sse_line(line, record)
        except Exception as e:  # a refused request, as an HTTP target would report it
            record.status = getattr(e, "status_code", 500)
            record.error = f"{type(e).__name__}: {e}"[:300]
        record.end = time.perf_counter()
        if record.ok and not record.output_tokens:
            record.output_tokens = out_tokens
        return record

    return send
