"""Schema fuzzing: schemathesis cases from the app's own /openapi.json, sent to the real app.

    python -m ops.fuzz [--url http://127.0.0.1:8000] [--examples 1000] [--api-key KEY]

Without --url it starts the embedded default (serve_configs/local.yaml) on --port, as the tests
do, and stops it after. Most generated bodies name a served model (the endpoint's own, an alias,
or another task's) so cases reach the pools, not only the 404 of an unknown model; generation is
capped at a few tokens so the CPU LLM answers quickly. Every answer must be below 500, and every
4xx must be OpenAI's error JSON. Writes results/fuzz-<utc date>/fuzz.json (counts by operation
and status, and every failure with a curl command to replay it); exits 1 on any failure.
"""

from __future__ import annotations

import argparse
import collections
import json
import math
import random
import sys
import time
from pathlib import Path
from typing import Any

from recipes.paths import RESULTS_ROOT

MODELS = {
    "/v1/chat/completions": ["smollm2-135m-instruct", "chat-fast"],
    "/v1/completions": ["smollm2-135m-instruct", "chat-fast"],
    "/v1/embeddings": ["all-minilm-l6-v2", "text-embedding-minilm"],
    "/v1/rerank": ["minilm-rerank", "rerank-minilm"],
    "/v1/audio/transcriptions": ["whisper-1", "whisper-tiny.en"],
}
ANY_MODEL = [m for models in MODELS.values() for m in models]
MAX_TOKENS = 8


def steer(case: Any, rng: random.Random) -> None:
    """Point most cases at served models and keep generation short."""
    body = case.body
    if not isinstance(body, dict):
        return
    if "model" in body and rng.random() < 0.85:
        own = MODELS.get(case.operation.path, ANY_MODEL)
        body["model"] = rng.choice(own if rng.random() < 0.9 else ANY_MODEL)
    if case.operation.path in ("/v1/chat/completions", "/v1/completions"):
        for field in ("max_tokens", "max_completion_tokens"):
            value = body.get(field)
            if not isinstance(value, int) or isinstance(value, bool) or value > MAX_TOKENS:
                body[field] = MAX_TOKENS
        if isinstance(body.get("n"), int) and body["n"] > 2:
            body["n"] = 2


def is_openai_error(response: Any) -> bool:
    try:
        error = response.json()["error"]
    except Exception:
        return False
    return isinstance(error, dict) and {"message", "type", "param", "code"} <= set(error)


def fuzz(base_url: str, examples: int, api_key: str | None, seed: int) -> dict[str, Any]:
    import hypothesis
    import schemathesis

    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    per_operation = math.ceil(examples / len(operations))
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    rng = random.Random(seed)
    counts: dict[str, collections.Counter] = {}
    failures: list[dict[str, Any]] = []

    # Rounds with fresh seeds until enough cases: an operation with few inputs (GET /health)
    # runs out of distinct cases at once and is left out of the next round.
    active = list(operations)
    for round_no in range(8):
        total = sum(sum(c.values()) for c in counts.values())
        if total >= examples or not active:
            break
        exhausted = []
        for operation in active:
            label = f"{operation.method.upper()} {operation.path}"
            counter = counts.setdefault(label, collections.Counter())
            before = sum(counter.values())
            run = _runner(
                operation, per_operation, base_url, headers, rng, label, counter, failures
            )
            started = time.monotonic()
            hypothesis.seed(seed + round_no)(run)()
            made = sum(counter.values()) - before
            if made < per_operation // 2:
                exhausted.append(operation)
            print(
                f"round {round_no} {label}: {made} cases in {time.monotonic() - started:.0f}s "
                f"{dict(sorted(counter.items()))}",
                flush=True,
            )
        active = [op for op in active if op not in exhausted]
    return {
        "base_url": base_url,
        "seed": seed,
        "cases": sum(sum(c.values()) for c in counts.values()),
        "by_operation": {k: dict(sorted(v.items())) for k, v in counts.items()},
        "failures": failures,
    }


def _runner(
    operation: Any,
    examples: int,
    base_url: str,
    headers: dict[str, str],
    rng: random.Random,
    label: str,
    counter: collections.Counter,
    failures: list[dict[str, Any]],
) -> Any:
    """One operation's hypothesis test: `examples` generated cases, each sent and checked."""
    from hypothesis import HealthCheck, Phase, given, settings

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy())
    def run(case: Any) -> None:
        steer(case, rng)
        try:
            response = case.call(base_url=base_url, headers=headers, timeout=120)
        except Exception as exc:  # a connection the server dropped is a failure too
            counter["error"] += 1
            failures.append({"operation": label, "error": repr(exc)[:500]})
            return
        status = response.status_code
        counter[str(status)] += 1
        if status >= 500 or (status >= 400 and not is_openai_error(response)):
            failures.append(
                {
                    "operation": label,
                    "status": status,
                    "body": response.text[:500],
                    "curl": case.as_curl_command()[:4000],
                }
            )

    return run


def stall_probe(base_url: str) -> list[dict[str, Any]]:
    """`GET /health` latency (every 50 ms) while one large embeddings body is parsed: how long
    the Gateway's event loop is held (bodies are parsed on it). A 4M-token-id body (refused by
    the token-id limit after parsing) and a 16,000-text body (refused by the input count)."""
    import threading

    import httpx

    bodies = {
        "token ids, 4M": {"model": "text-embedding-minilm", "input": [[7] * 1000] * 4000},
        "texts, 16k x 1 KB": {"model": "text-embedding-minilm", "input": ["word " * 200] * 16000},
    }
    out = []
    for label, payload in bodies.items():
        body = json.dumps(payload).encode()
        latencies: list[float] = []
        stop = threading.Event()

        def poll(latencies: list[float] = latencies, stop: threading.Event = stop) -> None:
            with httpx.Client(base_url=base_url, timeout=60) as client:
                while not stop.is_set():
                    started = time.perf_counter()
                    client.get("/health")
                    latencies.append(time.perf_counter() - started)
                    time.sleep(0.05)

        thread = threading.Thread(target=poll)
        thread.start()
        time.sleep(1.0)
        started = time.perf_counter()
        r = httpx.post(
            f"{base_url}/v1/embeddings",
            content=body,
            headers={"content-type": "application/json"},
            timeout=120,
        )
        took = time.perf_counter() - started
        time.sleep(1.0)
        stop.set()
        thread.join()
        out.append(
            {
                "body": label,
                "body_mb": round(len(body) / 1e6, 1),
                "status": r.status_code,
                "request_s": round(took, 3),
                "health_max_s": round(max(latencies), 3),
                "health_p50_s": round(sorted(latencies)[len(latencies) // 2], 4),
                "health_samples": len(latencies),
            }
        )
        print(out[-1], flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=None, help="a running app (default: start local.yaml)")
    parser.add_argument("--port", type=int, default=8031, help="port of the app it starts")
    parser.add_argument("--examples", type=int, default=1000, help="cases in all (at least)")
    parser.add_argument("--api-key", default=None, help="Bearer key for a keyed Gateway")
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--stall", action="store_true", help="run stall_probe first (open app)")
    args = parser.parse_args(argv)
    out = args.out or RESULTS_ROOT / f"fuzz-{time.strftime('%Y-%m-%d', time.gmtime())}"
    out.mkdir(parents=True, exist_ok=True)

    def run(url: str) -> dict[str, Any]:
        if args.stall:
            (out / "stall.json").write_text(json.dumps(stall_probe(url), indent=2) + "\n")
        return fuzz(url, args.examples, args.api_key, args.seed)

    if args.url:
        report = run(args.url.rstrip("/"))
    else:
        from app.launcher import running_app
        from recipes.paths import CONFIG_ROOT

        with running_app(CONFIG_ROOT / "local.yaml", port=args.port) as url:
            report = run(url)
    (out / "fuzz.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"{report['cases']} cases, {len(report['failures'])} failure(s): {out / 'fuzz.json'}")
    return 1 if report["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
