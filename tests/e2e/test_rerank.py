"""POST /v1/rerank end to end (bi-encoder scoring, the embedded default), and the
cross-encoder path through the real deployment class."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from tests.conftest import assert_openai_error

MODEL = "minilm-rerank"
QUERY = "What is the capital of France?"
DOCS = [
    "Bananas are a good source of potassium.",
    "Paris is the capital and largest city of France.",
    "The stock market fell sharply on Monday.",
    "Berlin is the capital of Germany.",
]


def rerank(http, **body):
    return http.post("/v1/rerank", json={"model": MODEL, "query": QUERY, "documents": DOCS, **body})


def test_relevant_document_ranks_first(http):
    r = rerank(http)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == MODEL and body["id"]
    results = body["results"]
    assert results[0]["index"] == 1
    scores = [x["relevance_score"] for x in results]
    assert scores == sorted(scores, reverse=True)
    assert sorted(x["index"] for x in results) == [0, 1, 2, 3]
    assert all("document" not in x for x in results)
    assert body["usage"]["total_tokens"] > 0
    assert r.headers["x-recipe"].startswith("rerank-minilm-cpu@1+")


def test_top_n_and_return_documents_with_object_documents(http):
    r = http.post(
        "/v1/rerank",
        json={
            "model": "rerank-minilm",  # alias
            "query": QUERY,
            "documents": [{"text": d} for d in DOCS],
            "top_n": 2,
            "return_documents": True,
        },
    )
    results = r.json()["results"]
    assert len(results) == 2
    assert results[0]["document"] == {"text": DOCS[1]}


def test_cohere_and_vllm_paths_answer_the_same(http):
    a = rerank(http).json()["results"]
    b = http.post("/v2/rerank", json={"model": MODEL, "query": QUERY, "documents": DOCS}).json()
    assert [x["index"] for x in a] == [x["index"] for x in b["results"]]


async def test_concurrent_reranks_are_independent(async_http):
    async with async_http() as client:
        queries = ["capital of France", "potassium in fruit", "stock market news"] * 4
        rs = await asyncio.gather(
            *(
                client.post("/v1/rerank", json={"model": MODEL, "query": q, "documents": DOCS})
                for q in queries
            )
        )
    best = [r.json()["results"][0]["index"] for r in rs]
    assert best == [1, 0, 2] * 4


@pytest.mark.parametrize(
    "body, param",
    [
        ({"query": "", "documents": DOCS}, "query"),
        ({"query": QUERY, "documents": []}, "documents"),
        ({"query": QUERY, "documents": ["ok", ""]}, "documents"),
        ({"query": QUERY, "documents": DOCS, "top_n": 0}, "top_n"),
        ({"documents": DOCS}, "query"),
    ],
)
def test_invalid_fields_are_400(http, body, param):
    assert_openai_error(http.post("/v1/rerank", json={"model": MODEL, **body}), 400, param)


def test_too_many_documents_is_400(http):
    r = http.post("/v1/rerank", json={"model": MODEL, "query": "q", "documents": ["d"] * 1001})
    assert_openai_error(r, 400, "documents")


def test_over_long_document_is_400_unless_truncate(http):
    docs = ["short", "word " * 400]
    r = http.post("/v1/rerank", json={"model": MODEL, "query": "q", "documents": docs})
    assert_openai_error(r, 400, "documents[1]")
    ok = http.post(
        "/v1/rerank", json={"model": MODEL, "query": "q", "documents": docs, "truncate": True}
    )
    assert ok.status_code == 200


def test_unknown_model_is_404(http):
    r = http.post("/v1/rerank", json={"model": "nope", "query": "q", "documents": ["d"]})
    assert_openai_error(r, 404, "model")


def test_cross_encoder_path_plumbing(serve_app):
    """The cross-encoder scoring path through the real RerankDeployment (batching included).

    PLUMBING ONLY: no trained cross-encoder installs from PyPI, so this CrossEncoder is the
    MiniLM checkpoint with a fresh, seeded classification head (num_labels=1). Its scores carry
    no meaning: the test checks shapes, ranges, sort order and that the same pair always gets
    the same score, not ranking quality.
    """
    from ray import serve

    from app.registry import identity_of
    from deployments.contract import CallContext, RerankCall, Scores
    from deployments.rerank.deployment import RerankDeployment
    from recipes.loader import load_recipe

    recipe = load_recipe("rerank-minilm-cpu@1")
    engine = recipe.engine.model_copy(
        update={"scoring": "cross-encoder", "allow_untrained_head": True}
    )
    handle = serve.run(
        RerankDeployment.options(name="xenc-plumbing", ray_actor_options={"num_cpus": 0}).bind(
            identity_of(recipe), recipe.model.source, engine
        ),
        name="xenc-plumbing",
        route_prefix=None,
    )
    try:
        context = CallContext(request_id="plumbing", arrival=time.time())
        call = RerankCall(query=QUERY, documents=DOCS, truncate=None, context=context)
        (first,) = handle.rerank.remote([call]).result(timeout_s=120)
        (again,) = handle.rerank.remote([call, call]).result(timeout_s=120)[1:]
        assert isinstance(first, Scores)
        assert first.scores.dtype == np.float32 and first.scores.shape == (len(DOCS),)
        assert all(0.0 <= s <= 1.0 for s in first.scores)  # sigmoid of the head's logit
        assert first.scores.tolist() == again.scores.tolist()  # one pair, one score
        assert first.tokens > len(DOCS)
    finally:
        serve.delete("xenc-plumbing")
