"""Model listing, health and readiness of the running app."""

from __future__ import annotations


def test_models_list_every_model_with_its_task_and_recipe(http, openai_client):
    body = http.get("/v1/models").json()
    assert body["object"] == "list"
    cards = {m["id"]: m for m in body["data"]}
    assert cards["all-minilm-l6-v2"]["task"] == "embed"
    assert cards["minilm-rerank"]["task"] == "rerank"
    assert cards["text-embedding-minilm"]["root"] == "all-minilm-l6-v2"
    for card in cards.values():
        assert card["object"] == "model"
        assert card["recipe"].count("@") == 1 and "+" in card["recipe"]
    ids = {m.id for m in openai_client.models.list()}
    assert {"all-minilm-l6-v2", "minilm-rerank"} <= ids


def test_single_model_card(http):
    assert http.get("/v1/models/all-minilm-l6-v2").json()["task"] == "embed"
    assert http.get("/v1/models/nope").status_code == 404


def test_health_and_readiness(http):
    assert http.get("/health").json() == {"status": "ok"}
    ready = http.get("/ready")
    assert ready.status_code == 200
    body = ready.json()
    assert body["ready"] is True
    assert set(body["deployments"]) >= {"Gateway", "embed-minilm-cpu", "rerank-minilm-cpu"}
    assert all(s == "HEALTHY" for s in body["deployments"].values())


def test_request_id_is_echoed(http):
    r = http.get("/v1/models", headers={"x-request-id": "my-trace-123"})
    assert r.headers["x-request-id"] == "my-trace-123"
