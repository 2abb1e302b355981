"""Rules a recipe set must pass before it may launch, beyond what the schema checks.

Each rule returns problems as plain sentences naming the recipe and the field to change.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ops.recipes.vram import estimate
from recipes.engines import LLMEngineConfig
from recipes.loader import RecipeError, load_recipe, recipe_path, split_ref
from recipes.schema import Recipe, RecipeSet

# A fraction of a GPU cannot be scheduled more precisely than this.
EPSILON = 1e-6


@dataclass(frozen=True)
class Problem:
    where: str
    rule: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: [{self.rule}] {self.message}"


def check_recipe(recipe: Recipe) -> list[Problem]:
    """Rules about one recipe on its own."""
    problems: list[Problem] = []
    where = f"{recipe.id}@{recipe.version}"

    def add(rule: str, message: str) -> None:
        problems.append(Problem(where, rule, message))

    profiles = set(recipe.profiles)
    mixed = sorted(profiles & {"batch", "long_context"})
    if "ttft_critical" in profiles and mixed and recipe.dossier.decision.shared_pool is None:
        add(
            "shared-pool",
            f"a ttft_critical pool also serves {mixed}: long prefills and big batches "
            "will sit in front of latency-critical requests. Split the pool, or record "
            "the decision in decision.shared_pool {reason, owner, date}",
        )
    engine = recipe.engine
    if isinstance(engine, LLMEngineConfig):
        max_context = recipe.model.max_context
        if (
            max_context is not None
            and engine.max_model_len >= max_context
            and recipe.profile != "long_context"
            and not recipe.dossier.decision.max_context_reason
        ):
            add(
                "max-context",
                f"engine.max_model_len {engine.max_model_len} is the model's whole context "
                f"({max_context}) in a {recipe.profile} pool: size it to the traffic (max "
                "context is the long_context pool's job) or give decision.max_context_reason",
            )
        if engine.max_model_len > (max_context or engine.max_model_len):
            add(
                "max-context",
                f"engine.max_model_len {engine.max_model_len} exceeds the model's "
                f"max_context {max_context}",
            )
        problems += _check_context(recipe, where)
        if engine.device == "cuda":
            if recipe.hardware.count != engine.tensor_parallel_size:
                add(
                    "tensor-parallel",
                    f"hardware.count {recipe.hardware.count} != engine.tensor_parallel_size "
                    f"{engine.tensor_parallel_size}: one replica uses one GPU per TP rank",
                )
            if engine.tensor_parallel_size > 1 and recipe.deployment.num_gpus not in (0, 1):
                add(
                    "tensor-parallel",
                    "a tensor-parallel replica takes whole GPUs from its placement group; "
                    "deployment.num_gpus must be 0 or 1 (the bundles are rendered from TP)",
                )
        elif engine.tensor_parallel_size != 1:
            add("tensor-parallel", "tensor parallelism needs device: cuda")
        est = estimate(recipe)
        if est is not None and not est.fits:
            add(
                "vram",
                f"expected {est.per_gpu_gib:.1f} GiB per GPU (weights {est.weights_gib:.1f} + "
                f"KV {est.kv_worst_case_gib:.1f} over {est.tensor_parallel} GPU(s) + overhead "
                f"{est.overhead_gib:.1f}) exceeds memory x gpu_memory_utilization = "
                f"{est.budget_gib:.1f} GiB: lower max_num_seqs or max_model_len, or add GPUs",
            )
    elif recipe.context is not None or recipe.routing is not None:
        add("context", "context and routing apply to LLM pools only")
    if recipe.deployment.num_gpus > 0 and recipe.hardware.accelerator == "cpu":
        add("hardware", "deployment.num_gpus > 0 on a cpu recipe")
    if getattr(engine, "device", "cpu") == "cuda" and recipe.hardware.accelerator == "cpu":
        add("hardware", "engine.device is cuda but hardware.accelerator is cpu")
    problems += _check_rollback(recipe, where)
    problems += _check_gate(recipe, where)
    problems += _check_evidence(recipe, where)
    problems += _check_envelope(recipe, where)
    return problems


def at_advertised_max(recipe: Recipe) -> bool:
    """An LLM pool whose engine takes the model's whole advertised context."""
    engine, max_context = recipe.engine, recipe.model.max_context
    return (
        isinstance(engine, LLMEngineConfig)
        and max_context is not None
        and engine.max_model_len >= max_context
    )


def _check_context(recipe: Recipe, where: str) -> list[Problem]:
    """The advertised max context is not a default path without a measured working context,
    and a declared working context is one the long-context eval measured."""
    problems: list[Problem] = []
    evaluated = recipe.dossier.long_context_eval
    if (
        at_advertised_max(recipe)
        and recipe.default_pool
        and recipe.profile != "long_context"
        and evaluated is None
    ):
        problems.append(
            Problem(
                where,
                "long-context-eval",
                f"the pool serves the bare model id by default at the model's advertised max "
                f"context ({recipe.model.max_context}) with no recorded long-context eval: run "
                "`python -m ops.evals longctx` and record it in dossier.long_context_eval, or "
                "lower engine.max_model_len and leave long prompts to a long_context pool",
            )
        )
    context = recipe.context
    if context is None:
        return problems
    engine = recipe.engine
    assert isinstance(engine, LLMEngineConfig)
    if context.working_tokens > engine.max_model_len:
        problems.append(
            Problem(
                where,
                "working-context",
                f"context.working_tokens {context.working_tokens} exceeds engine.max_model_len "
                f"{engine.max_model_len}",
            )
        )
    if evaluated is None:
        problems.append(
            Problem(
                where,
                "working-context",
                "context.working_tokens is set with no dossier.long_context_eval behind it: "
                "a working context is measured (`python -m ops.evals longctx`), not assumed",
            )
        )
    elif evaluated.working_context is None or context.working_tokens > evaluated.working_context:
        problems.append(
            Problem(
                where,
                "working-context",
                f"context.working_tokens {context.working_tokens} is beyond the working context "
                f"the long-context eval measured ({evaluated.working_context}, "
                f"{evaluated.results})",
            )
        )
    return problems


def _check_envelope(recipe: Recipe, where: str) -> list[Problem]:
    """An envelope number comes from the results file it names, which the dossier lists."""
    from ops.capacity.envelope import load_envelope

    declared = recipe.dossier.expectations.envelope
    if declared is None:
        return []
    if declared.file not in recipe.dossier.results:
        return [
            Problem(
                where,
                "envelope",
                f"expectations.envelope.file {declared.file} is not in dossier.results",
            )
        ]
    try:
        measured = load_envelope(declared.file)
    except (OSError, ValueError) as e:
        return [Problem(where, "envelope", f"{declared.file} is not an envelope: {e}")]
    if measured.recipe.split("+")[0] != f"{recipe.id}@{recipe.version}":
        return [
            Problem(where, "envelope", f"{declared.file} measured {measured.recipe}, not {where}")
        ]
    if declared.max_concurrency_within_slo != measured.max_concurrency_within_slo:
        return [
            Problem(
                where,
                "envelope",
                f"expectations.envelope.max_concurrency_within_slo "
                f"{declared.max_concurrency_within_slo} != {measured.max_concurrency_within_slo} "
                f"in {declared.file}",
            )
        ]
    return []


def _check_evidence(recipe: Recipe, where: str) -> list[Problem]:
    """A number in the expectations has a results file behind it, or says it is unmeasured."""
    exp = recipe.dossier.expectations
    numbers = [
        name
        for name in ("vram_gib", "throughput", "latency", "cold_start_s", "envelope")
        if getattr(exp, name) is not None
    ]
    if not numbers or recipe.dossier.results:
        return []
    if (exp.measured or "").lower().startswith("unmeasured"):
        return []
    return [
        Problem(
            where,
            "evidence",
            f"expectations {', '.join(numbers)} have no results file: list the run's files in "
            "dossier.results, or start expectations.measured with 'unmeasured'",
        )
    ]


EVALS_DIR = Path(__file__).resolve().parents[1] / "evals"


def _check_gate(recipe: Recipe, where: str) -> list[Problem]:
    """A structured quality gate names an eval set that ships, of the recipe's task."""
    gate = recipe.dossier.decision.quality_gate
    if isinstance(gate, str):
        return []
    path = EVALS_DIR / f"{gate.eval}.json"
    if not path.exists():
        return [Problem(where, "quality-gate", f"eval set {path.name} not found in ops/evals/")]
    task = json.loads(path.read_text()).get("task")
    tasks = {str(recipe.task)} | ({"embed"} if recipe.task == "rerank" else set())
    if task not in tasks:
        return [
            Problem(
                where, "quality-gate", f"eval set {gate.eval} is for '{task}', not '{recipe.task}'"
            )
        ]
    return []


def _check_rollback(recipe: Recipe, where: str) -> list[Problem]:
    target = recipe.dossier.decision.rollback_to
    if "@" not in target:
        return []  # an alias: resolved by the rollout tool against what is serving
    try:
        rid, version = split_ref(target)
    except RecipeError as e:
        return [Problem(where, "rollback", str(e))]
    if (rid, version) == (recipe.id, recipe.version):
        return []  # a first version rolls back to itself
    if not recipe_path(rid, version).exists():
        return [Problem(where, "rollback", f"decision.rollback_to {target} does not exist")]
    return []


def check_set(recipe_set: RecipeSet, recipes: list[Recipe]) -> list[Problem]:
    """Rules about recipes launched together on one node."""
    problems = [p for r in recipes for p in check_recipe(r)]
    where = f"set {recipe_set.id}@{recipe_set.version}"
    by_id = {r.id: r for r in recipes}

    def add(rule: str, message: str) -> None:
        problems.append(Problem(where, rule, message))

    node = recipe_set.node
    cpus = recipe_set.gateway.num_cpus * recipe_set.gateway.num_replicas + sum(
        r.deployment.num_cpus * _replicas(r) for r in recipes
    )
    if cpus > node.cpus + EPSILON:
        add(
            "cpu-budget",
            f"the gateway and pools ask for {cpus:g} CPUs at their max replicas; the node has "
            f"{node.cpus:g}: a replica that cannot be scheduled waits forever",
        )
    gpus = sum(gpus_per_replica(r) * _replicas(r) for r in recipes)
    if gpus > node.gpus + EPSILON:
        add(
            "gpu-budget", f"pools ask for {gpus:g} GPUs at their max replicas; node has {node.gpus}"
        )

    grouped: set[str] = set()
    for group in recipe_set.gpu_sharing:
        unknown = [rid for rid in group if rid not in by_id]
        if unknown:
            add("gpu-sharing", f"gpu_sharing names recipes not in the set: {unknown}")
            continue
        grouped |= set(group)
        members = [by_id[rid] for rid in group]
        fraction = sum(r.deployment.num_gpus * _replicas(r) for r in members)
        if fraction > 1 + EPSILON:
            add(
                "gpu-sharing",
                f"{group} share one GPU but their num_gpus sum to {fraction:g} (> 1)",
            )
        if node.gpu_memory_gib is not None:
            memory = sum(_claimed_memory_gib(r, node.gpu_memory_gib) for r in members)
            if memory > node.gpu_memory_gib + EPSILON:
                add(
                    "gpu-sharing",
                    f"{group} share one {node.gpu_memory_gib:g} GiB GPU but claim {memory:.1f} "
                    "GiB (vLLM pools: gpu_memory_utilization x memory; others: "
                    "expectations.vram_gib)",
                )
    for r in recipes:
        fraction = r.deployment.num_gpus
        if 0 < fraction < 1 and r.id not in grouped:
            add(
                "gpu-sharing",
                f"{r.id} takes a fraction ({fraction:g}) of a GPU but is in no gpu_sharing group: "
                "say which pools share its GPU so their sum can be checked",
            )

    problems += _check_default_paths(recipes, where)

    names: dict[str, str] = {}
    for r in recipes:
        for name in [r.model.name, *r.aliases]:
            owner = names.setdefault(name, r.id)
            if owner != r.id and name in r.aliases:
                add("routing", f"alias '{name}' of {r.id} is already taken by {owner}")
    return problems


def default_pool_of(recipes: list[Recipe], model: str) -> Recipe:
    """The pool that answers a model's bare id: the first with default_pool, else the first
    (the Gateway's registry resolves it the same way)."""
    pools = [r for r in recipes if r.model.name == model]
    return next((r for r in pools if r.default_pool), pools[0])


def _check_default_paths(recipes: list[Recipe], where: str) -> list[Problem]:
    problems: list[Problem] = []
    for model in dict.fromkeys(r.model.name for r in recipes):
        default = default_pool_of(recipes, model)
        if at_advertised_max(default) and default.dossier.long_context_eval is None:
            problems.append(
                Problem(
                    where,
                    "long-context-eval",
                    f"{default.id} answers model '{model}' by default at its advertised max "
                    f"context ({default.model.max_context}) with no recorded long-context eval: "
                    "run `python -m ops.evals longctx` and record it, or make a pool sized to "
                    "the traffic the default",
                )
            )
    for r in recipes:
        if r.context is None or r.context.long_requests != "route":
            continue
        if not any(o.model.name == r.model.name and "long_context" in o.profiles for o in recipes):
            problems.append(
                Problem(
                    where,
                    "routing",
                    f"{r.id} routes prompts over its working context to the long_context pool, "
                    f"but no pool of model '{r.model.name}' in the set serves long_context",
                )
            )
    return problems


def _replicas(recipe: Recipe) -> int:
    return recipe.deployment.autoscaling.max_replicas


def gpus_per_replica(recipe: Recipe) -> float:
    """GPUs one replica takes: its tensor-parallel ranks, or its (fractional) num_gpus."""
    engine = recipe.engine
    if (
        isinstance(engine, LLMEngineConfig)
        and engine.device == "cuda"
        and engine.tensor_parallel_size > 1
    ):
        return float(engine.tensor_parallel_size)
    return recipe.deployment.num_gpus


def _claimed_memory_gib(recipe: Recipe, gpu_memory_gib: float) -> float:
    if isinstance(recipe.engine, LLMEngineConfig) and recipe.engine.device == "cuda":
        return recipe.engine.gpu_memory_utilization * gpu_memory_gib * _replicas(recipe)
    return (recipe.dossier.expectations.vram_gib or 0.0) * _replicas(recipe)


def validate_all(set_ids: list[str], recipe_refs: list[str]) -> tuple[list[str], list[Problem]]:
    """Load and check every named set and recipe; schema errors become problems too."""
    from recipes.loader import load_set, load_set_recipes

    checked: list[str] = []
    problems: list[Problem] = []
    for ref in recipe_refs:
        try:
            problems += check_recipe(load_recipe(ref))
            checked.append(ref)
        except RecipeError as e:
            problems.append(Problem(ref, "schema", str(e)))
    for set_id in set_ids:
        try:
            recipe_set = load_set(set_id)
            problems += [
                p
                for p in check_set(recipe_set, load_set_recipes(recipe_set))
                if p.where.startswith("set ")
            ]
            checked.append(f"set {set_id}")
        except RecipeError as e:
            problems.append(Problem(f"set {set_id}", "schema", str(e)))
    return checked, problems
