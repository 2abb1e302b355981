"""Protocol models, response rendering and the model registry: pure logic, no Serve app."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from app.protocol.audio import render, to_srt, to_vtt
from app.protocol.chat import ChatCompletionRequest
from app.protocol.embeddings import EmbeddingRequest
from app.protocol.rerank import RerankRequest
from app.registry import ModelRegistry
from deployments.common.errors import InvalidRequest, ModelNotFound
from deployments.contract import Segment, Transcript, Word
from ops.quality import word_error_rate
from recipes.engines import Task
from recipes.loader import load_recipe, load_set


def test_embedding_input_forms():
    assert EmbeddingRequest(model="m", input="a").texts_or_ids() == ["a"]
    assert EmbeddingRequest(model="m", input=["a", "b"]).texts_or_ids() == ["a", "b"]
    assert EmbeddingRequest(model="m", input=[1, 2, 3]).texts_or_ids() == [[1, 2, 3]]
    assert EmbeddingRequest(model="m", input=[[1], [2, 3]]).texts_or_ids() == [[1], [2, 3]]
    for bad in ("", [], ["a", ""], [[]]):
        with pytest.raises(ValidationError):
            EmbeddingRequest(model="m", input=bad)


def test_rerank_documents_as_strings_or_objects():
    request = RerankRequest(model="m", query="q", documents=["a", {"text": "b"}])
    assert request.document_texts() == ["a", "b"]
    with pytest.raises(ValidationError):
        RerankRequest(model="m", query="q", documents=[{"text": ""}])


def test_chat_request_passes_engine_extras_through():
    request = ChatCompletionRequest.model_validate(
        {"model": "m", "messages": [{"role": "user", "content": "hi"}], "top_k": 5}
    )
    body = request.engine_body()
    assert body["top_k"] == 5 and "temperature" not in body  # only what the client sent
    with pytest.raises(ValidationError, match="stream_options"):
        ChatCompletionRequest(
            model="m", messages=[{"role": "user", "content": "hi"}], stream_options={}
        )


TRANSCRIPT = Transcript(
    text="Hello there. General Kenobi.",
    language="en",
    duration=3661.5,
    segments=[
        Segment(id=0, seek=0, start=0.0, end=1.25, text=" Hello there.", tokens=[1],
                temperature=0.0, avg_logprob=-0.1, compression_ratio=1.0, no_speech_prob=0.0),
        Segment(id=1, seek=0, start=3600.5, end=3661.5, text=" General Kenobi.", tokens=[2],
                temperature=0.0, avg_logprob=-0.1, compression_ratio=1.0, no_speech_prob=0.0),
    ],
    words=[Word(word=" Hello", start=0.0, end=0.5)],
)  # fmt: skip


def test_srt_and_vtt_timestamps():
    assert to_srt(TRANSCRIPT.segments).splitlines()[:3] == [
        "1",
        "00:00:00,000 --> 00:00:01,250",
        "Hello there.",
    ]
    assert "01:00:00,500 --> 01:01:01,500" in to_srt(TRANSCRIPT.segments)
    vtt = to_vtt(TRANSCRIPT.segments)
    assert vtt.startswith("WEBVTT\n\n00:00:00.000 --> 00:00:01.250\nHello there.\n")


def test_response_formats():
    body, media = render(TRANSCRIPT, "json", [])
    assert body == {"text": TRANSCRIPT.text, "usage": {"type": "duration", "seconds": 3662}}
    assert media == "application/json"
    text, media = render(TRANSCRIPT, "text", [])
    assert text == TRANSCRIPT.text + "\n" and media.startswith("text/plain")
    verbose, _ = render(TRANSCRIPT, "verbose_json", ["word"])
    assert verbose["language"] == "english" and "words" in verbose and "segments" not in verbose
    verbose, _ = render(TRANSCRIPT, "verbose_json", [])
    assert len(verbose["segments"]) == 2 and "words" not in verbose


def test_word_error_rate():
    assert word_error_rate("the quick brown fox", "The quick, brown fox!") == 0.0
    assert word_error_rate("the quick brown fox", "the quick fox") == 0.25
    assert word_error_rate("a b", "a b c d") == 1.0
    assert word_error_rate("", "") == 0.0


@pytest.fixture(scope="module")
def registry() -> ModelRegistry:
    recipe_set = load_set("h100x8-llama3-8b")
    specs = [load_recipe(ref).spec for ref in recipe_set.recipes]
    # Clients are stand-ins: the registry only routes to them (no Serve app in unit tests).
    return ModelRegistry(specs, clients={s.id: f"client:{s.id}" for s in specs})


def test_registry_routes_model_alias_and_profile(registry):
    assert registry.resolve("llama-3-8b-instruct", Task.CHAT).id == "llm-llama3-8b-fast-h100"
    assert registry.resolve("chat-batch", Task.CHAT).spec.profile == "batch"
    long_pool = registry.resolve("chat-long", Task.COMPLETION)
    assert long_pool.spec.profile == "long_context"
    assert long_pool.identity.tags == {
        "model": "llama-3-8b-instruct",
        "pool": "llm-llama3-8b-long-h100",
        "profile": "long_context",
        "recipe": long_pool.spec.ref,
    }
    by_header = registry.resolve("llama-3-8b-instruct", Task.CHAT, profile="ttft_critical")
    assert by_header.id == "llm-llama3-8b-critical-h100"
    assert by_header.client == "client:llm-llama3-8b-critical-h100"
    # an alias plus a header for another profile of the same model follows the header
    assert registry.resolve("chat-fast", Task.CHAT, profile="batch").spec.profile == "batch"


def test_registry_errors(registry):
    with pytest.raises(ModelNotFound):
        registry.resolve("gpt-9", Task.CHAT)
    with pytest.raises(InvalidRequest, match="serves 'chat'"):
        registry.resolve("llama-3-8b-instruct", Task.EMBED)
    with pytest.raises(InvalidRequest, match="no pool for workload profile"):
        registry.resolve("llama-3-8b-instruct", Task.CHAT, profile="stt")


def test_model_list_reports_recipes_and_pools(registry):
    cards = {c.id: c for c in registry.model_list().data}
    llama = cards["llama-3-8b-instruct"]
    assert llama.task == "chat" and len(llama.pools) == 4
    assert llama.recipe.startswith("llm-llama3-8b-fast-h100@1+")
    assert cards["chat-critical"].root == "llama-3-8b-instruct"
    assert cards["whisper-1"].task == "transcribe"
