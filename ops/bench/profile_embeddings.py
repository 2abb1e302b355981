"""Where an embeddings request's time goes in the app, on CPU: py-spy of the Gateway and the
embeddings replica, CPU time of every process group (HAProxy included: it is native code, which
py-spy cannot sample), and Serve's own timings (processing latency per deployment, batch wait,
batch execution, batch size, event-loop scheduling latency) scraped from Ray's metrics.

    python -m ops.bench.profile_embeddings [--sizes 16 1] [--concurrency 32] [--seconds 20]

Starts `serve_configs/local.yaml` (every pool, as `make serve`) in a private local Ray on a
private port. For each size: warm-up; a window without py-spy for Serve's metrics and CPU
accounting; then a window with py-spy recording the Gateway and the embeddings replica at once
(--nonblocking, raw collapsed stacks). Writes results/embeddings-profile-cpu/<size>x<c>/
(raw stacks, breakdown.json) and results/embeddings-profile-cpu/profile.json + breakdown.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx

from ops.bench.peer_servers import APP_GROUPS, Server, app_server, classify, cpu_by_group
from ops.bench.peers import LOCAL_CONFIG, closed_loop, embed_body, log
from ops.bench.texts import make_texts
from recipes.paths import PROJECT_ROOT

OUT = PROJECT_ROOT / "results" / "embeddings-profile-cpu"
PY_SPY = Path(os.environ.get("PY_SPY", PROJECT_ROOT / ".venv" / "bin" / "py-spy"))

# Stage of a sampled stack: the leaf-most frame that matches a rule decides (so pickling inside
# a response builder counts as pickling, torch inside the model as the model). Matched against
# "function (file)" of each frame.
STAGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "pickling / (de)serialization across the hop",
        (
            r"\bpickle\b",
            r"cloudpickle",
            r"serialization\.py",
            r"_serialize|_deserialize|deserialize_objects|serialize_objects",
            r"msgpack",
            r"__reduce__|__setstate__|__getstate__|_reconstructor",
        ),
    ),
    (
        "tokenization",
        (
            r"tokenization_utils",
            r"tokenizers",
            r"\bcount_tokens\b",
            r"\btokenize\b|\bpreprocess\b",
            r"_batch_encode_plus|batch_encode_plus|__call__ \(transformers/tokenization",
        ),
    ),
    (
        "model forward",
        (
            r"torch/nn/",
            r"transformers/models/",
            r"sentence_transformers/models",
            r"\b_forward\b",
            r"torch/",
            r"\bforward\b",
        ),
    ),
    (
        "response building (pydantic, float lists, base64, JSON)",
        (
            r"pydantic",
            r"\btolist\b",
            r"_encode_vector",
            r"base64",
            r"json_response|JSONResponse|render \(|jsonable_encoder|json/encoder|orjson",
            r"EmbeddingResponse|EmbeddingData|model_dump",
            r"serialize_response",
        ),
    ),
    (
        "request parsing / validation (FastAPI, pydantic in)",
        (
            r"fastapi/routing|fastapi/dependencies|solve_dependencies|request_body_to_args",
            r"starlette/requests|\bjson\(|json/decoder|loads \(json",
        ),
    ),
    (
        "Serve batching (queue, wait, split)",
        (r"serve/batching\.py", r"run_flat_batch|make_batcher|_encode_many|count_items"),
    ),
    (
        "middleware / telemetry / tracing",
        (
            r"app/middleware|app/observe|telemetry/",
            r"starlette/middleware",
            r"opentelemetry",
            r"ray/util/metrics|metrics_utils|_record_|record_request",
            r"logging/__init__|logging_utils|ray/serve/_private/logging",
        ),
    ),
    (
        "handle hop (router, replica scheduler, gRPC/core worker calls)",
        (
            r"serve/handle\.py|serve/_private/router|request_router|replica_scheduler",
            r"replica_result|_private/local_testing_mode|\bgrpc\b|grpc/aio",
            r"ray/_raylet|_raylet\.pyx|ray/_private/worker\.py|actor\.py",
        ),
    ),
    (
        "HTTP server (uvicorn/ASGI in the replica: direct ingress)",
        (r"uvicorn", r"h11", r"httptools", r"starlette/routing|starlette/applications"),
    ),
    (
        "Serve replica wrapper (user-code call, asyncio tasks)",
        (r"serve/_private/replica\.py", r"serve/_private/", r"ray/serve/"),
    ),
    ("asyncio event loop (scheduling, selectors)", (r"asyncio/", r"selectors\.py", r"uvloop")),
    ("threads (to_thread executor plumbing)", (r"concurrent/futures|threading\.py",)),
)
STAGE_RES = [(name, [re.compile(p) for p in pats]) for name, pats in STAGES]

SERVE_METRICS = (
    "ray_serve_deployment_processing_latency_ms",
    "ray_serve_batch_wait_time_ms",
    "ray_serve_batch_execution_time_ms",
    "ray_serve_actual_batch_size",
    "ray_serve_event_loop_scheduling_latency_ms",
    "ray_serve_haproxy_ingress_router_latency_ms",
    "ray_serve_num_router_requests",
    "ray_platform_queue_seconds",
    "ray_platform_batch_size",
    "ray_platform_batch_inference_seconds",
    "ray_platform_pool_latency_seconds",
    "ray_platform_request_duration_seconds",
)


# --- stacks ------------------------------------------------------------------------------------


def parse_raw(text: str) -> list[tuple[list[str], int]]:
    """py-spy's raw (collapsed) format: `frame;frame;... count`, root first."""
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        out.append((stack.split(";"), int(count)))
    return out


# Leaf frames where a thread sits in C without Python above it: Ray's core worker loop, a
# thread whose target is C (uvloop's run_forever, the router's loop), a blocking wait. py-spy
# without --native cannot tell waiting from C work there; CPU accounting per process can.
NATIVE_WAIT = re.compile(
    r"^(Worker\.main_loop|Thread\.run \(threading\.py|.*_run_router_event_loop|"
    r".*run_forever|.*\bselect \(selectors|.*\bwait \(threading|.*_wait_for_tstate_lock)"
)
NATIVE_WAIT_STAGE = "native code without Python frames (core worker, uvloop, waits)"


def stage_of(frames: list[str]) -> str:
    if frames and NATIVE_WAIT.match(frames[-1]):
        return NATIVE_WAIT_STAGE
    if all(f.startswith(("thread", "process")) for f in frames):
        return NATIVE_WAIT_STAGE  # a thread with no Python frame at all
    for frame in reversed(frames):
        for name, pats in STAGE_RES:
            if any(p.search(frame) for p in pats):
                if name == "tokenization":
                    # counting (validation, per request) vs encoding (in the batch)
                    counting = any("count_tokens" in f or "check_lengths" in f for f in frames)
                    return f"{name}: {'count (validation)' if counting else 'encode (batch)'}"
                return name
    return "other"


def breakdown(stacks: list[tuple[list[str], int]]) -> dict[str, Any]:
    """Share of samples per stage, and the top self (leaf) and inclusive frames."""
    total = sum(n for _, n in stacks) or 1
    stages: dict[str, int] = {}
    leaves: dict[str, int] = {}
    inclusive: dict[str, int] = {}
    threads: dict[str, int] = {}
    for frames, n in stacks:
        if frames and frames[0].startswith(("thread", "process")):
            label = next((f for f in frames if f.startswith("thread")), frames[0])
            threads[label] = threads.get(label, 0) + n
        stage = stage_of(frames)
        stages[stage] = stages.get(stage, 0) + n
        if frames:
            leaves[frames[-1]] = leaves.get(frames[-1], 0) + n
        for f in set(frames):
            inclusive[f] = inclusive.get(f, 0) + n

    def top(d: dict[str, int], k: int) -> list[tuple[str, float]]:
        return [
            (f, round(100 * n / total, 1)) for f, n in sorted(d.items(), key=lambda x: -x[1])[:k]
        ]

    return {
        "samples": total,
        "stages_pct": {
            s: round(100 * n / total, 1) for s, n in sorted(stages.items(), key=lambda x: -x[1])
        },
        "threads_pct": {t: round(100 * n / total, 1) for t, n in threads.items()},
        "python_stages_pct": _without(stages, NATIVE_WAIT_STAGE),
        "top_self": top(leaves, 15),
        "top_inclusive": top(inclusive, 25),
    }


def _without(stages: dict[str, int], drop: str) -> dict[str, float]:
    """Shares among the samples with Python frames running (the native-wait stage left out)."""
    kept = {k: v for k, v in stages.items() if k != drop}
    total = sum(kept.values()) or 1
    return {k: round(100 * v / total, 1) for k, v in sorted(kept.items(), key=lambda x: -x[1])}


# --- metrics -----------------------------------------------------------------------------------

_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+([0-9.eE+-]+|NaN|\+Inf)")


def scrape(port: int) -> dict[str, float]:
    """`name{labels}` -> value for the metrics we read (sums and counts of histograms)."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    out = {}
    for line in text.splitlines():
        m = _LINE.match(line)
        if not m:
            continue
        name, labels, value = m.group(1), m.group(2) or "", m.group(3)
        base = re.sub(r"_(sum|count|bucket)$", "", name)
        if base not in SERVE_METRICS or name.endswith("_bucket"):
            continue
        keep = {
            k: v
            for k, v in re.findall(r'(\w+)="([^"]*)"', labels)
            if k in ("deployment", "pool", "route", "method", "application")
        }
        key = name + "{" + ",".join(f"{k}={v}" for k, v in sorted(keep.items())) + "}"
        out[key] = out.get(key, 0.0) + float(value)
    return out


def histogram_means(before: dict[str, float], after: dict[str, float]) -> dict[str, Any]:
    """Per histogram and label set: observations and mean over the window."""
    out = {}
    for key, total in after.items():
        if "_sum{" not in key:
            continue
        count_key = key.replace("_sum{", "_count{")
        n = after.get(count_key, 0.0) - before.get(count_key, 0.0)
        s = total - before.get(key, 0.0)
        if n > 0:
            out[key.replace("_sum{", "{")] = {"count": n, "mean": s / n}
    return out


def metrics_port_of(server: Server) -> int | None:
    """The app's Ray metrics port, as its wrapper printed it last (a restart appends)."""
    text = server.log_path.read_text() if server.log_path else ""
    ports = re.findall(r"metrics_export_port=(\d+)", text)
    return int(ports[-1]) if ports else None


# --- pids --------------------------------------------------------------------------------------


def pids_by_group(server: Server) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for p in server.tree():
        try:
            group = classify(" ".join(p.cmdline()) or p.name(), APP_GROUPS)
        except Exception:
            continue
        out.setdefault(group, []).append(p.pid)
    return out


def py_spy(pid: int, seconds: int, path: Path, rate: int) -> subprocess.Popen:
    return subprocess.Popen(
        [
            str(PY_SPY),
            "record",
            "-p",
            str(pid),
            "-d",
            str(seconds),
            "-r",
            str(rate),
            "-f",
            "raw",
            "--nonblocking",
            "--threads",
            "-o",
            str(path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


# --- one size ----------------------------------------------------------------------------------


def profile_size(server: Server, size: int, opts, pool: list[str]) -> dict[str, Any]:
    folder = Path(opts.out) / f"{size}x{opts.concurrency}"
    folder.mkdir(parents=True, exist_ok=True)
    url = server.url + server.embed_path
    body = embed_body(server, pool, size, opts.encoding)
    groups = pids_by_group(server)
    mport = metrics_port_of(server)
    result: dict[str, Any] = {
        "texts_per_request": size,
        "concurrency": opts.concurrency,
        "pids": groups,
    }

    # window 1: Serve metrics and CPU per process group, no profiler attached
    _, warm_errors, _ = asyncio.run(closed_loop(url, body, opts.concurrency, opts.warmup, 0))
    if warm_errors and not server.wait_ready(60):
        log("  the app stopped answering (its HAProxy killed?): restarting it")
        server.restart()
        asyncio.run(closed_loop(url, body, opts.concurrency, opts.warmup, 0))
        groups = pids_by_group(server)
        mport = metrics_port_of(server)
        result["pids"] = groups
    time.sleep(opts.settle)
    m0 = scrape(mport) if mport else {}
    cpu0 = cpu_by_group([server])
    lat, errors, elapsed = asyncio.run(closed_loop(url, body, opts.concurrency, opts.seconds, 0))
    cpu1 = cpu_by_group([server])
    time.sleep(opts.settle)
    m1 = scrape(mport) if mport else {}
    lat.sort()
    n = len(lat)
    result["window"] = {
        "requests": n,
        "errors": errors,
        "elapsed_s": elapsed,
        "requests_per_s": n / elapsed,
        "texts_per_s": n * size / elapsed,
        "p50_ms": 1000 * lat[n // 2] if n else None,
        "p99_ms": 1000 * lat[min(n - 1, int(n * 0.99))] if n else None,
    }
    result["cpu_ms_per_request"] = {
        g: round(1000 * (cpu1[server.name].get(g, 0) - cpu0[server.name].get(g, 0)) / max(n, 1), 2)
        for g in cpu1[server.name]
    }
    result["cores"] = {
        g: round((cpu1[server.name].get(g, 0) - cpu0[server.name].get(g, 0)) / elapsed, 3)
        for g in cpu1[server.name]
    }
    result["serve_metrics"] = histogram_means(m0, m1)

    # window 2: py-spy on the Gateway and the embeddings replica at once, under the same load
    targets = {g: groups[g][0] for g in ("gateway", "embed-pool") if groups.get(g)}
    spies = {
        g: py_spy(pid, opts.seconds, folder / f"{g}.raw.txt", opts.rate)
        for g, pid in targets.items()
    }

    async def load() -> None:
        await closed_loop(url, body, opts.concurrency, opts.seconds + 2, 1)

    asyncio.run(load())
    result["py_spy"] = {}
    for g, proc in spies.items():
        _, err = proc.communicate(timeout=60)
        path = folder / f"{g}.raw.txt"
        if proc.returncode != 0 or not path.exists():
            result["py_spy"][g] = {"error": err.decode(errors="replace")[-500:]}
            continue
        result["py_spy"][g] = breakdown(parse_raw(path.read_text()))
    (folder / "breakdown.json").write_text(json.dumps(result, indent=1) + "\n")
    return result


def markdown(results: list[dict[str, Any]]) -> str:
    parts = []
    for r in results:
        w = r["window"]
        parts += [
            f"## {r['texts_per_request']} text(s)/request x c={r['concurrency']}",
            "",
            f"Without profiler: {w['requests_per_s']:.1f} req/s, {w['texts_per_s']:.1f} texts/s, "
            f"p50 {w['p50_ms'] or 0:.1f} ms, p99 {w['p99_ms'] or 0:.1f} ms, errors {w['errors']}.",
            "",
            "| process group | cores | CPU ms / request |",
            "|---|---|---|",
        ]
        for g, ms in sorted(r["cpu_ms_per_request"].items(), key=lambda x: -x[1]):
            parts.append(f"| {g} | {r['cores'][g]:.2f} | {ms:.2f} |")
        parts += ["", "Serve's and the platform's own timings (mean over the window):", ""]
        parts += ["| metric | count | mean |", "|---|---|---|"]
        for k, v in sorted(r["serve_metrics"].items()):
            parts.append(f"| `{k}` | {v['count']:.0f} | {v['mean']:.3f} |")
        for g, b in r["py_spy"].items():
            parts += ["", f"### py-spy: {g} ({b.get('samples', 0)} samples)", ""]
            if "error" in b:
                parts.append(f"error: {b['error']}")
                continue
            parts += [
                "| stage | % of samples | % of samples with Python running |",
                "|---|---|---|",
            ]
            busy = b.get("python_stages_pct", {})
            parts += [f"| {s} | {p} | {busy.get(s, '-')} |" for s, p in b["stages_pct"].items()]
            parts += ["", "Top self frames:", ""]
            parts += [f"- {p}% `{f}`" for f, p in b["top_self"][:10]]
            parts += ["", "Top inclusive frames:", ""]
            parts += [f"- {p}% `{f}`" for f, p in b["top_inclusive"][:18]]
        parts.append("")
    return "\n".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[16, 1])
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--settle", type=float, default=12.0, help="wait for Ray's metrics export")
    parser.add_argument("--rate", type=int, default=100, help="py-spy samples/s")
    parser.add_argument("--encoding", choices=["base64", "float"], default="base64")
    parser.add_argument("--port", type=int, default=8035)
    parser.add_argument("--config", default=str(LOCAL_CONFIG))
    parser.add_argument("--out", default=str(OUT))
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="rebuild breakdown.md from the raw stacks and breakdown.json already in --out",
    )
    opts = parser.parse_args()
    out = Path(opts.out)
    if opts.report_only:
        results = []
        for path in sorted(
            out.glob("*x*/breakdown.json"), key=lambda p: -int(p.parent.name.split("x")[0])
        ):
            r = json.loads(path.read_text())
            for g in r["py_spy"]:
                raw = path.parent / f"{g}.raw.txt"
                if raw.exists():
                    r["py_spy"][g] = breakdown(parse_raw(raw.read_text()))
            path.write_text(json.dumps(r, indent=1) + "\n")
            results.append(r)
        (out / "breakdown.md").write_text(markdown(results))
        print(markdown(results))
        return
    out.mkdir(parents=True, exist_ok=True)
    pool = make_texts(4096)
    server = app_server(Path(opts.config), opts.port)
    load0 = os.getloadavg()
    log(f"starting the app on {opts.port}")
    server.start(out / "logs")
    results = []
    try:
        for size in opts.sizes:
            log(f"profiling {size} text(s)/request x c={opts.concurrency}")
            results.append(profile_size(server, size, opts, pool))
    finally:
        server.stop()
    summary = {
        "settings": {k: v for k, v in vars(opts).items()},
        "loadavg_before": load0,
        "loadavg_after": os.getloadavg(),
        "cpus": os.cpu_count(),
        "results": results,
    }
    (out / "profile.json").write_text(json.dumps(summary, indent=1) + "\n")
    (out / "breakdown.md").write_text(markdown(results))
    print(markdown(results))


if __name__ == "__main__":
    main()
