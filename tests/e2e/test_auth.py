"""API keys and tenants on the real app.

The session app runs open on 127.0.0.1 (as `make serve` does), so every other test sends no key.
This module switches its Gateway to a keys file for its own tests and back to open at the end:
the keys travel in the Gateway's `user_config` (GatewayConfig.auth), which Serve applies in
place, so no replica restarts either way (a second keyed app would cost a whole Ray app start).
"""

from __future__ import annotations

import asyncio
import copy
import time
from collections.abc import Iterator

import httpx
import pytest
import yaml

from ops.recipes.render import APP_NAME, GATEWAY_DEPLOYMENT
from recipes.tenants import hash_key
from tests.conftest import assert_openai_error

CHAT_MODEL = "smollm2-135m-instruct"
EMBED_MODEL = "text-embedding-minilm"

KEYS = {
    # id: (token, entry)
    "full": ("sk-test-full", {"tenant": "team-a", "scopes": ["inference", "metrics", "feedback"]}),
    "embed-only": ("sk-test-embed", {"tenant": "team-b", "models": [EMBED_MODEL]}),
    "b-feedback": ("sk-test-b-feedback", {"tenant": "team-b", "scopes": ["feedback"]}),
    "rpm": ("sk-test-rpm", {"tenant": "team-c", "rpm": 2}),
    "tpm": ("sk-test-tpm", {"tenant": "team-c", "tpm": 5}),
    "one-at-a-time": ("sk-test-conc", {"tenant": "team-c", "max_concurrent": 1}),
}


def bearer(key_id: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[key_id][0]}"}


def _with_auth(config: dict, auth: dict | None) -> dict:
    out = copy.deepcopy(config)
    app = next(a for a in out["applications"] if a["name"] == APP_NAME)
    deployments = app.setdefault("deployments", [])
    gateway = next((d for d in deployments if d["name"] == GATEWAY_DEPLOYMENT), None)
    if gateway is None:
        gateway = {"name": GATEWAY_DEPLOYMENT}
        deployments.append(gateway)
    user_config = dict(gateway.get("user_config") or {})
    user_config.pop("auth", None)
    if auth is not None:
        user_config["auth"] = auth
    gateway["user_config"] = user_config
    return out


def _wait_status(http: httpx.Client, status: int, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if http.get("/v1/models").status_code == status:
            return
        time.sleep(0.3)
    raise AssertionError(f"GET /v1/models never answered {status}")


@pytest.fixture(scope="module")
def keyed(serve_app, http, tmp_path_factory) -> Iterator[httpx.Client]:
    from ops.rollout.runner import Live

    path = tmp_path_factory.mktemp("keys") / "keys.yaml"
    entries = [{"id": k, "sha256": hash_key(t), **e} for k, (t, e) in KEYS.items()]
    path.write_text(yaml.safe_dump({"keys": entries}))
    live = Live()
    before = live.config()
    live.apply(_with_auth(before, {"keys_file": str(path)}), [APP_NAME])
    _wait_status(http, 401)
    try:
        yield http
    finally:
        live.apply(_with_auth(live.config(), None), [APP_NAME])
        _wait_status(http, 200)


def test_no_key_or_a_wrong_key_is_401_and_probes_stay_open(keyed):
    error = assert_openai_error(keyed.get("/v1/models"), 401)
    assert error["code"] == "missing_api_key"
    error = assert_openai_error(
        keyed.get("/v1/models", headers={"Authorization": "Bearer no"}), 401
    )
    assert error["code"] == "invalid_api_key"
    assert keyed.get("/health").status_code == 200
    assert keyed.get("/openapi.json").status_code == 200


def test_key_limited_to_a_model(keyed):
    chat = {"model": CHAT_MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    r = keyed.post("/v1/chat/completions", json=chat, headers=bearer("embed-only"))
    assert assert_openai_error(r, 403, param="model")["type"] == "permission_error"
    r = keyed.post(
        "/v1/embeddings", json={"model": EMBED_MODEL, "input": "x"}, headers=bearer("embed-only")
    )
    assert r.status_code == 200, r.text
    listed = {m["id"] for m in keyed.get("/v1/models", headers=bearer("embed-only")).json()["data"]}
    assert EMBED_MODEL in listed and CHAT_MODEL not in listed


def test_metrics_and_feedback_need_their_scopes_and_usage_is_by_tenant(keyed):
    assert_openai_error(keyed.get("/metrics", headers=bearer("embed-only")), 403)
    r = keyed.post(
        "/v1/embeddings",
        json={"model": EMBED_MODEL, "input": ["one text", "two"]},
        headers={**bearer("full"), "x-request-id": "team-a-req-1"},
    )
    assert r.status_code == 200, r.text
    # another tenant cannot label team-a's request (it reads as unknown to them)
    theirs = keyed.post(
        "/v1/feedback",
        json={"request_id": "team-a-req-1", "accepted": False},
        headers=bearer("b-feedback"),
    )
    assert theirs.status_code == 200 and theirs.json()["matched"] is False
    assert_openai_error(
        keyed.post(
            "/v1/feedback",
            json={"request_id": "team-a-req-1", "accepted": True},
            headers=bearer("embed-only"),
        ),
        403,
    )
    own = keyed.post(
        "/v1/feedback",
        json={"request_id": "team-a-req-1", "accepted": True},
        headers=bearer("full"),
    )
    assert own.json()["matched"] is True
    deadline = time.monotonic() + 30  # Ray exports metrics every few seconds
    text = ""
    while time.monotonic() < deadline:
        text = keyed.get("/metrics", headers=bearer("full")).text
        if 'tenant="team-a"' in text and "platform_tenant_usage_total" in text:
            break
        time.sleep(1)
    usage = [
        line
        for line in text.splitlines()
        if line.startswith("ray_platform_tenant_usage_total") and 'tenant="team-a"' in line
    ]
    assert any('unit="texts"' in line for line in usage), usage


def test_requests_per_minute_quota_is_429_with_retry_after(keyed):
    body = {"model": EMBED_MODEL, "input": "x"}
    for _ in range(2):
        assert keyed.post("/v1/embeddings", json=body, headers=bearer("rpm")).status_code == 200
    r = keyed.post("/v1/embeddings", json=body, headers=bearer("rpm"))
    error = assert_openai_error(r, 429)
    assert error["code"] == "rate_limit_exceeded"
    assert 1 <= int(r.headers["retry-after"]) <= 60


def test_tokens_per_minute_quota(keyed):
    body = {"model": EMBED_MODEL, "input": "a text of more than five tokens in all"}
    assert keyed.post("/v1/embeddings", json=body, headers=bearer("tpm")).status_code == 200
    assert_openai_error(keyed.post("/v1/embeddings", json=body, headers=bearer("tpm")), 429)


async def test_concurrency_cap(keyed, serve_app):
    stream = {
        "model": CHAT_MODEL,
        "messages": [{"role": "user", "content": "Count to fifty."}],
        "max_tokens": 64,
        "stream": True,
    }
    headers = bearer("one-at-a-time")
    async with httpx.AsyncClient(base_url=serve_app, timeout=120) as client:
        async with client.stream(
            "POST", "/v1/chat/completions", json=stream, headers=headers
        ) as first:
            assert first.status_code == 200
            second = await client.post(
                "/v1/embeddings", json={"model": EMBED_MODEL, "input": "x"}, headers=headers
            )
            assert_openai_error(second, 429)
            async for _ in first.aiter_bytes():
                pass
        await asyncio.sleep(0.2)
        after = await client.post(
            "/v1/embeddings", json={"model": EMBED_MODEL, "input": "x"}, headers=headers
        )
        assert after.status_code == 200, after.text
