"""A short real load-generator run against the shared app: sane records and numbers."""

from __future__ import annotations

import asyncio
import json

from ops.loadgen import report
from ops.loadgen.runner import run_http
from ops.loadgen.scenario import Arrival, Lengths, Scenario, load_scenario


def test_short_mixed_run_produces_sane_records(serve_app, tmp_path):
    base = load_scenario("fast-chat-cpu")
    chat = base.profiles[0].model_copy(
        update={"arrival": Arrival(type="concurrency", concurrency=2), "output": Lengths(value=8)}
    )
    embed = load_scenario("embed").profiles[0]
    embed = embed.model_copy(update={"arrival": Arrival(type="poisson", rate=4)})
    scenario = Scenario(name="smoke", seed=1, duration_s=8, warmup_s=1, profiles=[chat, embed])
    result = asyncio.run(run_http(scenario, serve_app, progress=False))
    chats = [r for r in result.records if r.profile == "fast_chat"]
    embeds = [r for r in result.records if r.profile == "embed"]
    assert chats and embeds and all(r.ok for r in result.records)
    for r in chats:
        # counted by the server (usage), not filled in from the requested length
        assert r.usage_reported and r.output_tokens == 8 and len(r.chunks) >= 2
        assert 0 < r.ttft < r.e2el and r.tpot > 0
        assert r.input_tokens > 60  # usage from the server: system prompt + user turn
    assert all(r.send >= result.window[0] for r in result.records)
    summary = result.summary["fast_chat"]
    assert summary["completed"] == len(chats) and summary["output_throughput"] > 0
    assert summary["ttft_s"]["p50"] <= summary["e2el_s"]["p50"]
    paths = report.write_run(result, tmp_path)
    rows = [json.loads(line) for line in paths["records"].read_text().splitlines()]
    assert len(rows) == len(result.records) and {"ttft", "tpot", "chunks"} <= set(rows[0])
    assert paths["cdf"].stat().st_size > 10_000
