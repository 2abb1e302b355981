"""The quality comparison of a rollout: the same eval inputs sent to the candidate and to the
current pool (each addressed with the `x-pool` header the Gateway honours during a rollout),
metrics per side, and the recipe's structured quality gate applied to them.

Eval sets ship in ops/evals/<name>.json. Metrics:
- chat: accuracy (a listed answer appears as whole words in the normalized reply) and greedy
  agreement (share of replies identical to the current version's);
- embeddings: recall@5 and nDCG@10 ranking documents by dot product (what a client of unit
  vectors does), cosine agreement (mean and minimum) and norm deviation against the current
  version's vectors of the same texts;
- rerank: nDCG@10 of the pool's scores;
- speech: mean word error rate on generated speech;
- every task: latency_p50_ratio, candidate / current median request latency on the same inputs,
  sent alternately one at a time; and under load (`ops.loadgen`, both versions in the same
  run): load_p50_ms / load_p99_ms (TTFT for chat) and load_p99_ratio.
"""

from __future__ import annotations

import json
import math
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from ops.quality import normalize_words, word_error_rate
from recipes.schema import AGAINST_CURRENT, QualityGate

EVALS = Path(__file__).resolve().parents[1] / "evals"
POOL_HEADER = "x-pool"


def load_eval(name: str) -> dict[str, Any]:
    path = EVALS / f"{name}.json"
    if not path.exists():
        raise FileNotFoundError(f"no eval set {path}")
    return json.loads(path.read_text())


# --- metrics (pure) -----------------------------------------------------------------------------


def answer_matches(reply: str, answers: list[str]) -> bool:
    words = normalize_words(reply)
    for answer in answers:
        want = normalize_words(answer)
        n = len(want)
        if any(words[i : i + n] == want for i in range(len(words) - n + 1)):
            return True
    return False


def recall_at(ranked: list[str], relevant: set[str], k: int) -> float:
    return len(set(ranked[:k]) & relevant) / len(relevant) if relevant else 0.0


def ndcg_at(ranked: list[str], relevant: set[str], k: int) -> float:
    dcg = sum(1 / math.log2(i + 2) for i, doc in enumerate(ranked[:k]) if doc in relevant)
    ideal = sum(1 / math.log2(i + 2) for i in range(min(k, len(relevant))))
    return dcg / ideal if ideal else 0.0


def vector_agreement(candidate: np.ndarray, current: np.ndarray) -> dict[str, float]:
    """Cosine between each candidate vector and the current version's vector of the same text,
    and how far their lengths differ (a cosine alone cannot see a change of scale)."""
    cn = np.linalg.norm(candidate, axis=1)
    un = np.linalg.norm(current, axis=1)
    cos = (candidate * current).sum(axis=1) / np.maximum(cn * un, 1e-12)
    return {
        "cosine_agreement": float(cos.mean()),
        "min_cosine_agreement": float(cos.min()),
        "norm_deviation": float(np.abs(cn / np.maximum(un, 1e-12) - 1).max()),
    }


def median_ratio(candidate: list[float], current: list[float]) -> float:
    return statistics.median(candidate) / max(statistics.median(current), 1e-9)


# --- running an eval against two pools ---------------------------------------------------------

Send = Callable[[str, str, dict[str, Any]], tuple[httpx.Response, float]]


def http_sender(client: httpx.Client) -> Send:
    def send(pool: str, path: str, payload: dict[str, Any]) -> tuple[httpx.Response, float]:
        start = time.perf_counter()
        response = client.post(path, headers={POOL_HEADER: pool}, **payload)
        seconds = time.perf_counter() - start
        if response.status_code != 200:
            raise RuntimeError(f"{pool} {path}: {response.status_code} {response.text[:300]}")
        if response.headers.get(POOL_HEADER) != pool:
            raise RuntimeError(
                f"asked for pool {pool}, answered by {response.headers.get(POOL_HEADER)}: "
                "is the rollout started?"
            )
        return response, seconds

    return send


def run_eval(
    eval_set: dict[str, Any], model: str, pools: dict[str, str], send: Send, task: str
) -> dict[str, Any]:
    """Metrics of both sides: `pools` maps side ('candidate', 'current') to a pool name.
    Inputs go alternately to each side, one at a time, so both see the same conditions.
    `task` is the pool's (a rerank pool reads the retrieval set's queries and documents)."""
    runner = {"chat": _chat, "embed": _embed, "rerank": _rerank, "transcribe": _speech}[task]
    return runner(eval_set, model, pools, send)


def _alternate(pools: dict[str, str], send: Send, path: str, payloads: list[dict]) -> dict:
    """Every payload to every side; responses and latencies per side."""
    out: dict[str, dict[str, list]] = {side: {"responses": [], "seconds": []} for side in pools}
    for payload in payloads:
        for side, pool in pools.items():
            response, seconds = send(pool, path, payload)
            out[side]["responses"].append(response)
            out[side]["seconds"].append(seconds)
    return out


def _latency(results: dict, metrics: dict) -> None:
    for side, r in results.items():
        metrics[side]["latency_p50_s"] = statistics.median(r["seconds"])
    metrics["candidate"]["latency_p50_ratio"] = median_ratio(
        results["candidate"]["seconds"], results["current"]["seconds"]
    )


def _chat(eval_set: dict, model: str, pools: dict[str, str], send: Send) -> dict:
    items = eval_set["items"]
    payloads = [
        {
            "json": {
                "model": model,
                "messages": [{"role": "user", "content": item["prompt"]}],
                "temperature": 0,
                "max_tokens": eval_set.get("max_tokens", 32),
            }
        }
        for item in items
    ]
    results = _alternate(pools, send, "/v1/chat/completions", payloads)
    replies = {
        side: [resp.json()["choices"][0]["message"]["content"] or "" for resp in r["responses"]]
        for side, r in results.items()
    }
    metrics: dict[str, dict[str, Any]] = {}
    for side, texts in replies.items():
        hits = [answer_matches(t, item["answers"]) for t, item in zip(texts, items, strict=True)]
        metrics[side] = {"accuracy": sum(hits) / len(hits), "n": len(hits)}
    same = [
        a.strip() == b.strip()
        for a, b in zip(replies["candidate"], replies["current"], strict=True)
    ]
    metrics["candidate"]["agreement"] = sum(same) / len(same)
    _latency(results, metrics)
    metrics["examples"] = [
        {"prompt": item["prompt"], "current": cur, "candidate": cand}
        for item, cur, cand in zip(items, replies["current"], replies["candidate"], strict=True)
        if cur.strip() != cand.strip()
    ][:5]
    return metrics


def _embed(eval_set: dict, model: str, pools: dict[str, str], send: Send) -> dict:
    docs = eval_set["documents"]
    queries = eval_set["queries"]
    texts = [d["text"] for d in docs] + [q["text"] for q in queries]
    # one request per text: per-request latency, and the same inputs on both sides
    payloads = [{"json": {"model": model, "input": [t]}} for t in texts]
    results = _alternate(pools, send, "/v1/embeddings", payloads)
    vectors = {
        side: np.array(
            [resp.json()["data"][0]["embedding"] for resp in r["responses"]], dtype=np.float64
        )
        for side, r in results.items()
    }
    ids = [d["id"] for d in docs]
    metrics: dict[str, dict[str, Any]] = {}
    for side, v in vectors.items():
        doc_v, query_v = v[: len(docs)], v[len(docs) :]
        recalls, ndcgs = [], []
        for q, qv in zip(queries, query_v, strict=True):
            order = np.argsort(-(doc_v @ qv), kind="stable")
            ranked = [ids[i] for i in order]
            relevant = set(q["relevant"])
            recalls.append(recall_at(ranked, relevant, 5))
            ndcgs.append(ndcg_at(ranked, relevant, 10))
        metrics[side] = {
            "recall_at_5": float(np.mean(recalls)),
            "ndcg_at_10": float(np.mean(ndcgs)),
            "mean_norm": float(np.linalg.norm(v, axis=1).mean()),
            "n": len(texts),
        }
    metrics["candidate"].update(vector_agreement(vectors["candidate"], vectors["current"]))
    _latency(results, metrics)
    return metrics


def _rerank(eval_set: dict, model: str, pools: dict[str, str], send: Send) -> dict:
    docs = eval_set["documents"]
    queries = eval_set["queries"]
    payloads = [
        {"json": {"model": model, "query": q["text"], "documents": [d["text"] for d in docs]}}
        for q in queries
    ]
    results = _alternate(pools, send, "/v1/rerank", payloads)
    metrics: dict[str, dict[str, Any]] = {}
    for side, r in results.items():
        ndcgs = []
        for q, resp in zip(queries, r["responses"], strict=True):
            ranked = [
                docs[item["index"]]["id"]
                for item in sorted(resp.json()["results"], key=lambda x: -x["relevance_score"])
            ]
            ndcgs.append(ndcg_at(ranked, set(q["relevant"]), 10))
        metrics[side] = {"ndcg_at_10": float(np.mean(ndcgs)), "n": len(queries)}
    _latency(results, metrics)
    return metrics


def _speech(eval_set: dict, model: str, pools: dict[str, str], send: Send) -> dict:
    from ops.speech import SENTENCES, clips

    audio = clips(SENTENCES)
    payloads = [
        {"files": {"file": ("speech.wav", data, "audio/wav")}, "data": {"model": model}}
        for data in audio
    ]
    results = _alternate(pools, send, "/v1/audio/transcriptions", payloads)
    metrics: dict[str, dict[str, Any]] = {}
    for side, r in results.items():
        wers = [
            word_error_rate(text, resp.json()["text"])
            for text, resp in zip(SENTENCES, r["responses"], strict=True)
        ]
        metrics[side] = {"wer": float(np.mean(wers)), "n": len(wers)}
    _latency(results, metrics)
    return metrics


# --- the gate -------------------------------------------------------------------------------------


def add_load_metrics(metrics: dict[str, Any], load: dict[str, Any]) -> None:
    """The gate's latency-under-load metrics from a side-by-side load run: each side's p50
    and p99 (TTFT for chat, request latency otherwise) and the candidate's p99 ratio."""
    key = "ttft" if load["gated_latency"].startswith("ttft") else "e2e"
    for side in ("candidate", "current"):
        metrics[side]["load_p50_ms"] = load[side][f"{key}_p50_ms"]
        metrics[side]["load_p99_ms"] = load[side][f"{key}_p99_ms"]
    cand, cur = metrics["candidate"]["load_p99_ms"], metrics["current"]["load_p99_ms"]
    metrics["candidate"]["load_p99_ratio"] = (
        None if cand is None or not cur else round(cand / cur, 4)
    )


def verdict(gate: QualityGate, metrics: dict[str, Any], slo: float | None = None) -> dict:
    """Each check with its numbers, and pass only when every check passes. `slo`: the recipe's
    p99 SLO in ms, the threshold of a check with compare 'slo'."""
    checks = []
    for check in gate.checks:
        candidate = metrics["candidate"].get(check.metric)
        against = check.metric in AGAINST_CURRENT or check.compare == "slo"
        current = None if against else metrics["current"].get(check.metric)
        ok = candidate is not None and check.passes(candidate, current, slo)
        checks.append(
            {
                "metric": check.metric,
                "rule": check.describe(slo),
                "candidate": candidate,
                "current": current,
                "passed": ok,
            }
        )
    return {"passed": all(c["passed"] for c in checks), "checks": checks}
