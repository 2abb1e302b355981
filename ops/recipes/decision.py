"""Decision records (ops/decisions/<recipe-id>.md): why a recipe serves the way it does."""

from __future__ import annotations

from pathlib import Path

from ops.recipes.render import placement_bundles
from ops.recipes.vram import estimate
from recipes.engines import LLMEngineConfig
from recipes.paths import PROJECT_ROOT
from recipes.schema import Recipe

DECISIONS_DIR = PROJECT_ROOT / "ops" / "decisions"


def decision_path(recipe: Recipe) -> Path:
    return DECISIONS_DIR / f"{recipe.id}.md"


ROLLOUTS_DIR = PROJECT_ROOT / "ops" / "rollouts"


def _gate(recipe: Recipe) -> str:
    gate = recipe.dossier.decision.quality_gate
    if isinstance(gate, str):
        return gate
    checks = "; ".join(c.describe() for c in gate.checks)
    return f"eval `ops/evals/{gate.eval}.json`: {checks}"


def _rollouts(recipe: Recipe) -> list[str]:
    """Links to the rollout records of this pool (ops/rollouts/<pool>-<time>.json)."""
    import json

    lines = []
    for path in sorted(ROLLOUTS_DIR.glob(f"{recipe.id}-*.json")):
        record = json.loads(path.read_text())
        if record.get("pool") != recipe.id:
            continue
        verdict = (record.get("verdict") or {}).get("passed")
        gate = "no eval" if verdict is None else "gate passed" if verdict else "gate failed"
        why = record.get("decision") or ""
        lines.append(
            f"- [{path.stem}](../rollouts/{path.name}): {record['current']} -> "
            f"{record['candidate']}, {record['state']} ({gate})" + (f": {why[:240]}" if why else "")
        )
    return ["## Rollouts", "", *lines, ""] if lines else []


def _serving_flags(recipe: Recipe) -> str:
    if isinstance(recipe.engine, LLMEngineConfig):
        from deployments.llm.engine import engine_cli_args

        flags = engine_cli_args(Path("<model>"), recipe.model.name, recipe.engine)
        # The engine gets the template's absolute path; the record keeps the recipe's own
        # (relative) one so that it reads the same from any checkout.
        template = recipe.engine.chat_template_file()
        if template is not None:
            flags = [recipe.engine.chat_template if f == str(template) else f for f in flags]
        return "`vllm serve " + " ".join(flags) + "`"
    fields = recipe.engine.model_dump(exclude={"kind"})
    return ", ".join(f"`{k}={v}`" for k, v in fields.items())


def _cache(recipe: Recipe) -> str:
    if not isinstance(recipe.engine, LLMEngineConfig):
        return "No KV cache (not a generative model)."
    engine = recipe.engine
    lines = [f"Prefix caching {'on' if engine.enable_prefix_caching else 'off'}."]
    est = estimate(recipe)
    if est is not None:
        lines.append(
            f"KV cache {est.kv_bytes_per_token / 1024:.1f} KiB per token; worst case "
            f"{est.kv_worst_case_gib:.1f} GiB for {engine.max_num_seqs} x {engine.max_model_len} "
            f"tokens; {est.per_gpu_gib:.1f} GiB per GPU expected"
            + (
                f" of a {est.budget_gib:.1f} GiB budget "
                f"({est.kv_budget_tokens():,} tokens of cache)."
                if est.budget_gib is not None
                else "."
            )
        )
    return " ".join(lines)


def _envelope(recipe: Recipe) -> str:
    exp = recipe.dossier.expectations
    parts = []
    if exp.throughput:
        t = exp.throughput
        lengths = (
            f", {t.input_tokens} in / {t.output_tokens} out" if t.input_tokens is not None else ""
        )
        parts.append(f"{t.value:,g} {t.unit} at concurrency {t.concurrency}{lengths}")
    if exp.latency:
        lat = exp.latency.model_dump(exclude_none=True)
        parts.append(", ".join(f"{k} {v:g}" for k, v in lat.items()))
    if exp.vram_gib is not None:
        parts.append(f"{exp.vram_gib:g} GiB device memory")
    if exp.cold_start_s is not None:
        parts.append(f"cold start {exp.cold_start_s:g} s")
    if exp.measured:
        parts.append(f"measured: {exp.measured}")
    return "; ".join(parts) or "Not measured yet."


def _working_context(recipe: Recipe) -> list[str]:
    """The measured working context and what the pool does beyond it (only when recorded)."""
    evaluated, context = recipe.dossier.long_context_eval, recipe.context
    if evaluated is None and context is None:
        return []
    lines = []
    if evaluated is not None:
        lines.append(
            f"Long-context eval ({evaluated.results}, lengths {evaluated.lengths}): working "
            f"context {evaluated.working_context} tokens; gate: {evaluated.gate}. "
            f"{evaluated.notes}".strip()
        )
    if context is not None:
        beyond = (
            "are sent to the model's long_context pool by the Gateway"
            if context.long_requests == "route"
            else "get a 400 naming the model's long_context pool"
        )
        lines.append(f"Prompts over {context.working_tokens} tokens {beyond}.")
    return ["## Working context", "", " ".join(lines), ""]


def _routing(recipe: Recipe) -> list[str]:
    routing = recipe.routing
    if routing is None:
        return []
    text = (
        f"{routing.policy}: the replica holding the longest prefix of the prompt (blocks of "
        f"{routing.block_chars} characters), the least-loaded one when its queue is longer by "
        f"more than {routing.imbalance_threshold}."
        if routing.policy == "prefix_affinity"
        else "Serve's power of two choices."
    )
    return ["## Routing", "", text, ""]


def render_decision(recipe: Recipe) -> str:
    d, dep, slo = recipe.dossier.decision, recipe.deployment, recipe.slo
    bundles = placement_bundles(recipe)
    scaling = dep.autoscaling
    slo_text = ", ".join(f"{k} {v:g}" for k, v in slo.model_dump(exclude_none=True).items())
    shared = (
        f"Shared with {recipe.serves_profiles} by decision of {d.shared_pool.owner} on "
        f"{d.shared_pool.date}: {d.shared_pool.reason}"
        if d.shared_pool
        else "Dedicated to this profile."
    )
    return "\n".join(
        [
            f"# {recipe.id} v{recipe.version}",
            "",
            f"Generated by `python -m ops.recipes decision` from serve_configs/recipes/"
            f"{recipe.id}/v{recipe.version}.yaml (content hash `{recipe.content_hash[:12]}`).",
            "",
            f"{recipe.dossier.description}",
            "",
            "| | |",
            "|---|---|",
            f"| Owner, date | {d.owner}, {d.date} |",
            f"| Model | `{recipe.model.name}` from {recipe.model.source.describe()} "
            f"({recipe.model.revision}); aliases {recipe.aliases or 'none'} |",
            f"| Hardware | {recipe.hardware.count} x {recipe.hardware.accelerator}"
            + (f", {recipe.hardware.memory_gib:g} GiB each" if recipe.hardware.memory_gib else "")
            + " |",
            f"| Runtime | {recipe.runtime.engine} {recipe.runtime.version} |",
            f"| Serving flags | {_serving_flags(recipe)} |",
            f"| Deployment | replicas {scaling.min_replicas}-{scaling.max_replicas} "
            f"(target {scaling.target_ongoing_requests:g} ongoing), max_ongoing_requests "
            f"{dep.max_ongoing_requests}, queue limit {dep.max_queued_requests} (429 + Retry-After "
            f"{dep.retry_after_s}s), {dep.num_cpus:g} CPU, {dep.num_gpus:g} GPU"
            + (f", placement {bundles} STRICT_PACK" if bundles else "")
            + " |",
            f"| Workload | profile {recipe.profile}. {shared} |",
            f"| Latency SLO | {slo_text or 'none declared'} |",
            f"| Quality gate | {_gate(recipe)} |",
            f"| Cache behaviour | {_cache(recipe)} |",
            f"| Capacity envelope | {_envelope(recipe)} |",
            f"| Cost | ${recipe.cost.usd_per_hour:g}/h per replica ({recipe.cost.basis}) |",
            f"| Rollback | {d.rollback_to} |",
            "",
            "## Why",
            "",
            d.reason,
            "",
            *(["## Max context", "", d.max_context_reason, ""] if d.max_context_reason else []),
            *_working_context(recipe),
            *_routing(recipe),
            "## Notes",
            "",
            recipe.dossier.expectations.notes or "None.",
            "",
            *_rollouts(recipe),
        ]
    )
