"""The fair app-vs-bare comparison (issue 12): the app and a bare `vllm serve` with identical
engine flags, measured in interleaved rounds by two clients, with every round's records kept.

    python -m ops.gpu.fair rounds --client loadgen --bare URL --app URL --out DIR
    python -m ops.gpu.fair rounds --client vllm-bench --bare URL --app URL --out DIR
    python -m ops.gpu.fair kv BARE_LOG APP_LOG --out DIR   # exit 3 if the KV caches differ > 2%
    python -m ops.gpu.fair vram --out DIR                  # NVML memory by process ancestry
    python -m ops.gpu.fair summarize DIR                   # fair.json + fair.md from the rounds

Fairness, by construction:
- both servers run the same recipe's engine flags (ops/gpu/proof.sh `bare` renders them with
  deployments.llm.engine.engine_cli_args), prefix caching off on both, the same memory share;
  `kv` compares the two engines' "GPU KV cache size" log lines and fails loudly past 2%;
- every point (concurrency) starts with a warm-up of both servers at that concurrency, then runs
  rounds bare, app, bare, app, ...; round r uses seed `seed + 1000 r + c` on both sides (the same
  prompts on both sides of one round, new prompts every round);
- each round writes its per-request records (gzipped) and its summary; `summarize` reports
  per-round app/bare ratios and deltas with the median and the min-max over rounds.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import typer

app = typer.Typer(help=__doc__, no_args_is_help=True, add_completion=False)

SCENARIO = Path(__file__).resolve().parent / "scenarios" / "p1-c64.yaml"
# requests per round at each concurrency: enough for stable p50s, small enough that 3 rounds x 2
# sides x 3 points fit one 10-minute device call per client
REQUESTS = {1: 16, 16: 128, 64: 256}
KV_TOLERANCE = 0.02


def _requests(c: int) -> int:
    return REQUESTS.get(c, max(4 * c, 16))


def _seed(base: int, rnd: int, c: int) -> int:
    return base + 1000 * rnd + c


# --- one round, one side ---------------------------------------------------------------------


# The shape of every run: 512 tokens in, 128 out (ignore_eos), streamed; CPU tests shrink it.
SHAPE = {"input": 512, "output": 128, "vocabulary": "dummy-llama"}


def _scenario(c: int, seed: int, requests: int, temperature: float | None):
    from ops.loadgen.scenario import Arrival, Lengths, load_scenario

    base = load_scenario(str(SCENARIO))
    profiles = [
        p.model_copy(
            update={
                "arrival": Arrival(type="concurrency", concurrency=c),
                "temperature": temperature,
                "input": Lengths(dist="fixed", value=SHAPE["input"]),
                "output": Lengths(dist="fixed", value=SHAPE["output"]),
                "vocabulary": SHAPE["vocabulary"],
            }
        )
        for p in base.profiles
    ]
    return base.model_copy(
        update={
            "name": f"fair-c{c}",
            "seed": seed,
            "requests": requests,
            "warmup_requests": 0,
            "profiles": profiles,
        }
    )


def loadgen_round(url: str, model: str, c: int, seed: int, requests: int,
                  temperature: float | None) -> tuple[dict, bytes]:  # fmt: skip
    """One ops.loadgen run: (summary in the common form, gzipped jsonl records)."""
    from ops.loadgen.cli import _with_models
    from ops.loadgen.runner import run_http

    scenario = _with_models(_scenario(c, seed, requests, temperature), model, [])
    result = asyncio.run(run_http(scenario, url, None, progress=False))
    s = result.summary["all"]
    summary = {
        "completed": s["completed"],
        "failed": s["failed"],
        "duration_s": s["duration_s"],
        "output_tokens": s["output_tokens"],
        "output_throughput": s["output_throughput"],
        "ttft_p50_ms": _ms(s["ttft_s"]["p50"]),
        "ttft_p99_ms": _ms(s["ttft_s"]["p99"]),
        "tpot_p50_ms": _ms(s["tpot_s"]["p50"]),
        "itl_p50_ms": _ms(s["itl_s"]["p50"]),
        "e2el_p50_ms": _ms(s["e2el_s"]["p50"]),
        "chunks_per_request": statistics.mean(len(r.chunks) for r in result.records)
        if result.records
        else None,
    }
    return summary, gzip.compress(result.jsonl().encode())


def _ms(value: float | None) -> float | None:
    return None if value is None else value * 1000


def vllm_bench_round(url: str, model: str, c: int, seed: int, requests: int, tokenizer: str,
                     folder: Path, name: str) -> tuple[dict, bytes]:  # fmt: skip
    """One `vllm bench serve` run in this process (vLLM's own client and metrics), random
    dataset 512/128, ignore_eos, its own --seed; (summary in the common form, gzipped detail)."""
    from vllm.benchmarks.serve import add_cli_args, main
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    parser = FlexibleArgumentParser()
    add_cli_args(parser)
    host, port = url.removeprefix("http://").rstrip("/").split(":")
    argv = [
        "--backend", "vllm", "--host", host, "--port", port,
        "--model", "dummy", "--served-model-name", model, "--tokenizer", tokenizer,
        "--dataset-name", "random", "--random-input-len", str(SHAPE["input"]),
        "--random-output-len", str(SHAPE["output"]),
        "--num-prompts", str(requests), "--max-concurrency", str(c), "--request-rate", "inf",
        "--ignore-eos", "--seed", str(seed), "--num-warmups", "0", "--ready-check-timeout-sec", "0",
        "--percentile-metrics", "ttft,tpot,itl,e2el", "--metric-percentiles", "50,99",
        "--disable-tqdm", "--save-result", "--save-detailed",
        "--result-dir", str(folder), "--result-filename", f"{name}.json",
    ]  # fmt: skip
    result = main(parser.parse_args(argv))
    path = folder / f"{name}.json"
    path.unlink(missing_ok=True)
    # per-request detail kept (input/output lengths, TTFTs, ITLs, latencies, start times), the
    # generated texts (random words of a dummy model) left out to keep the records small
    detail = json.dumps({k: v for k, v in result.items() if k != "generated_texts"}).encode()
    itls = [g for row in result.get("itls") or [] for g in row]
    summary = {
        "completed": result["completed"],
        "failed": result.get("failed", 0),
        "duration_s": result["duration"],
        "output_tokens": result["total_output_tokens"],
        "output_throughput": result["output_throughput"],
        "ttft_p50_ms": result.get("p50_ttft_ms", result.get("median_ttft_ms")),
        "ttft_p99_ms": result.get("p99_ttft_ms"),
        "tpot_p50_ms": result.get("p50_tpot_ms", result.get("median_tpot_ms")),
        "itl_p50_ms": result.get("p50_itl_ms", result.get("median_itl_ms")),
        "e2el_p50_ms": result.get("p50_e2el_ms", result.get("median_e2el_ms")),
        "chunks_per_request": (len(itls) / len(result["itls"]) + 1) if result.get("itls") else None,
    }
    return summary, gzip.compress(detail)


# --- the rounds --------------------------------------------------------------------------------


@app.command()
def rounds(
    client: str = typer.Option(..., help="loadgen or vllm-bench"),
    bare: str = typer.Option("http://127.0.0.1:8100"),
    app_url: str = typer.Option("http://127.0.0.1:8000", "--app"),
    bare_model: str = typer.Option("dummy"),
    app_model: str = typer.Option("chat-fast"),
    tokenizer: str = typer.Option("/tmp/models/llama-3-8b-dummy"),
    points: list[int] = typer.Option([1, 16, 64]),
    n_rounds: int = typer.Option(3, "--rounds"),
    seed: int = typer.Option(0, help="base seed; round r at concurrency c uses seed+1000r+c"),
    temperature: float = typer.Option(
        0.0, help="loadgen only; a negative value sends none (the server default)"
    ),
    requests: int = typer.Option(0, help="requests per round; 0 = the default for the point"),
    warmup: bool = typer.Option(True, help="warm both servers up at each point first"),
    input_len: int = typer.Option(512),
    output_len: int = typer.Option(128),
    vocabulary: str = typer.Option("dummy-llama", help="loadgen prompt words (CPU: english)"),
    tag: str = typer.Option("", help="label (and folder) of this series; default: the client"),
    out: Path = typer.Option(...),
) -> None:
    """Interleaved rounds bare, app, bare, app, ... at each concurrency, one client."""
    SHAPE.update(input=input_len, output=output_len, vocabulary=vocabulary)
    if client not in ("loadgen", "vllm-bench"):
        raise typer.BadParameter("client: loadgen or vllm-bench")
    temp = None if temperature < 0 else temperature
    tag = tag or (
        client
        if temp == 0.0 or client != "loadgen"
        else f"{client}-t{'default' if temp is None else temp}"
    )
    folder = out / tag
    folder.mkdir(parents=True, exist_ok=True)
    sides = {"bare": (bare, bare_model), "app": (app_url, app_model)}
    log = []
    for c in points:
        n = requests or _requests(c)
        if warmup:
            for side, (url, model) in sides.items():
                t = time.perf_counter()
                # warm-up: c in flight, max(c, 8) requests, prompts from a seed no round uses
                loadgen_round(url, model, c, seed + 999_000 + c, max(c, 8), temp)
                typer.echo(f"c={c} warm-up {side}: {time.perf_counter() - t:.1f}s")
        for r in range(1, n_rounds + 1):
            for side, (url, model) in sides.items():
                name = f"c{c}-r{r}-{side}"
                s = _seed(seed, r, c)
                t0 = time.time()
                if client == "loadgen":
                    summary, records = loadgen_round(url, model, c, s, n, temp)
                    (folder / f"{name}.records.jsonl.gz").write_bytes(records)
                else:
                    summary, records = vllm_bench_round(
                        url, model, c, s, n, tokenizer, folder, name
                    )
                    (folder / f"{name}.vllm-bench.json.gz").write_bytes(records)
                row = {"client": tag, "concurrency": c, "round": r, "side": side, "url": url,
                       "model": model, "seed": s, "requests": n, "started": t0,
                       **summary}  # fmt: skip
                (folder / f"{name}.summary.json").write_text(json.dumps(row, indent=1) + "\n")
                log.append(row)
                typer.echo(
                    f"{tag} c={c} round {r} {side}: {summary['output_throughput']:.0f} tok/s, "
                    f"TTFT p50 {_f(summary['ttft_p50_ms'])} ms, TPOT p50 "
                    f"{_f(summary['tpot_p50_ms'])} ms, ITL p50 {_f(summary['itl_p50_ms'])} ms, "
                    f"{summary['completed']} ok / {summary['failed']} failed"
                )
    typer.echo(f"{len(log)} runs written to {folder}")


def _f(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f}"


@app.command()
def coalesce(
    ms: float = typer.Argument(None, help="window in ms (negative: off); omitted: just print"),
    pool: str = typer.Option("llm-llama3-8b-proof-h100", help="the LLM pool's deployment"),
    address: str = typer.Option("auto", help="the Ray cluster of the app"),
) -> None:
    """Read or set the LLM pool's stream coalescing window on the running app (A/B of one
    change on the same replicas, without a restart)."""
    import ray
    from ray import serve

    ray.init(address=address, namespace="serve", log_to_driver=False, logging_level="ERROR")
    handle = serve.get_deployment_handle(pool, "platform")
    typer.echo(f"{pool}: stream coalescing {handle.stream_coalescing.remote(ms).result()} ms")


# --- KV cache check ----------------------------------------------------------------------------

KV_TOKENS = re.compile(r"GPU KV cache size: ([\d,]+) tokens")
KV_MEMORY = re.compile(r"Available KV cache memory: ([\d.\-]+) GiB")


def kv_lines(log: Path) -> dict[str, Any]:
    text = log.read_text(errors="replace") if log.exists() else ""
    lines = [ln for ln in text.splitlines() if KV_TOKENS.search(ln) or KV_MEMORY.search(ln)]
    tokens = [int(m.group(1).replace(",", "")) for m in KV_TOKENS.finditer(text)]
    return {"log": str(log), "lines": lines, "tokens": tokens[-1] if tokens else None}


@app.command()
def kv(bare_log: Path, app_log: Path, out: Path = typer.Option(...)) -> None:
    """Copy both engines' KV cache log lines into kv-cache.json; exit 3 if they differ > 2%."""
    bare, served = kv_lines(bare_log), kv_lines(app_log)
    body: dict[str, Any] = {"bare": bare, "app": served, "tolerance": KV_TOLERANCE}
    if bare["tokens"] and served["tokens"]:
        body["app_over_bare"] = served["tokens"] / bare["tokens"]
        body["ok"] = abs(body["app_over_bare"] - 1) <= KV_TOLERANCE
    else:
        body["ok"] = False
    out.mkdir(parents=True, exist_ok=True)
    (out / "kv-cache.json").write_text(json.dumps(body, indent=1) + "\n")
    for side in ("bare", "app"):
        for line in body[side]["lines"]:
            typer.echo(f"{side}: {line.strip()[-120:]}")
    if not body["ok"]:
        typer.echo(
            f"KV CACHE MISMATCH: bare {bare['tokens']} vs app {served['tokens']} tokens "
            f"(tolerance {KV_TOLERANCE:.0%}): the comparison would not be fair",
            err=True,
        )
        raise typer.Exit(3)
    typer.echo(f"KV cache app/bare = {body['app_over_bare']:.4f} (within {KV_TOLERANCE:.0%})")


# --- VRAM by process ancestry ------------------------------------------------------------------


def _proc(pid: int) -> tuple[str, int]:
    """(command line, parent pid) from /proc (no psutil: the GPU machine's Python may lack it)."""
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
        stat = Path(f"/proc/{pid}/stat").read_text()
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return "", 0
    return cmd, ppid


def classify(pid: int) -> tuple[str, list[str]]:
    """What a GPU process belongs to, from its ancestors' command lines."""
    chain = []
    while pid > 1 and len(chain) < 8:
        cmd, pid = _proc(pid)
        if not cmd:
            break
        chain.append(cmd[:160])
    joined = " <- ".join(chain)
    if "api_server" in joined or "vllm.entrypoints" in joined:
        kind = "bare vllm serve"
    elif m := re.search(r"ServeReplica:(\S+)", joined):
        kind = f"app replica {m.group(1)}"
    else:
        kind = "other"
    return kind, chain


@app.command()
def vram(out: Path = typer.Option(...)) -> None:
    """Device memory of every GPU process (NVML), attributed by its recorded parent chain."""
    import pynvml

    pynvml.nvmlInit()
    rows = []
    for i in range(pynvml.nvmlDeviceGetCount()):
        handle = pynvml.nvmlDeviceGetHandleByIndex(i)
        for p in pynvml.nvmlDeviceGetComputeRunningProcesses(handle):
            kind, chain = classify(p.pid)
            used = (p.usedGpuMemory or 0) / 2**30
            rows.append({"gpu": i, "pid": p.pid, "used_gib": round(used, 2), "belongs_to": kind,
                         "ancestry": chain})  # fmt: skip
        info = pynvml.nvmlDeviceGetMemoryInfo(handle)
        rows.append({"gpu": i, "device_used_gib": round(info.used / 2**30, 2),
                     "device_total_gib": round(info.total / 2**30, 2)})  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    (out / "vram-by-process.json").write_text(json.dumps(rows, indent=1) + "\n")
    for row in rows:
        typer.echo(f"{row.get('used_gib', row.get('device_used_gib'))} GiB  "
                   f"{row.get('belongs_to', 'device total')}  "
                   f"pid {row.get('pid', '-')}")  # fmt: skip


# --- summary -----------------------------------------------------------------------------------

METRICS = ("ttft_p50_ms", "ttft_p99_ms", "tpot_p50_ms", "itl_p50_ms")


def _stats(values: list[float]) -> dict[str, float | None]:
    values = [v for v in values if v is not None]
    if not values:
        return {"median": None, "min": None, "max": None}
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def summarize_rounds(rows: list[dict]) -> dict[str, Any]:
    """Per client and concurrency: each round's app/bare ratio and app-bare deltas, then the
    median and min-max over rounds (a round pairs bare and app runs with the same seed)."""
    out: dict[str, Any] = {}
    keys = sorted({(r["client"], r["concurrency"]) for r in rows})
    for client, c in keys:
        mine = [r for r in rows if r["client"] == client and r["concurrency"] == c]
        by_round: dict[int, dict[str, dict]] = {}
        for r in mine:
            by_round.setdefault(r["round"], {})[r["side"]] = r
        pairs = [v for _, v in sorted(by_round.items()) if "bare" in v and "app" in v]
        ratio = [p["app"]["output_throughput"] / p["bare"]["output_throughput"] for p in pairs]
        point: dict[str, Any] = {
            "rounds": len(pairs),
            "failed": sum(p[s]["failed"] for p in pairs for s in ("bare", "app")),
            "throughput_ratio": {**_stats(ratio), "per_round": ratio},
        }
        for m in METRICS:
            deltas = [
                p["app"][m] - p["bare"][m]
                for p in pairs
                if p["app"][m] is not None and p["bare"][m] is not None
            ]
            point[f"{m}_delta"] = {**_stats(deltas), "per_round": deltas}
        for side in ("bare", "app"):
            point[side] = {
                m: _stats([p[side][m] for p in pairs])
                for m in ("output_throughput", *METRICS, "chunks_per_request")
            }
        out.setdefault(client, {})[str(c)] = point
    return out


TARGETS = {
    "throughput_ratio": (">=", 0.97, (16, 64)),
    "ttft_p50_ms_delta": ("<=", 5.0, (1, 16)),
    "tpot_p50_ms_delta": ("<=", 0.3, (1, 16, 64)),
}


def verdicts(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target per client and point, judged on the median over rounds."""
    rows = []
    for client, points in summary.items():
        for metric, (op, limit, at) in TARGETS.items():
            for c in at:
                point = points.get(str(c))
                if not point:
                    continue
                value = point[metric]["median"]
                ok = value is not None and (value >= limit if op == ">=" else value <= limit)
                rows.append({"client": client, "concurrency": c, "metric": metric, "target":
                             f"{op} {limit}", "median": value, "met": ok})  # fmt: skip
    return rows


def _g(x: float | None, fmt: str) -> str:
    return "-" if x is None else fmt.format(x)


def markdown(summary: dict[str, Any], folder: str) -> str:
    lines = [
        "| client | c | rounds | app/bare output tok/s: median (min-max) | TTFT p50 Δ ms "
        "| TTFT p99 Δ ms | TPOT p50 Δ ms | ITL p50 Δ ms | bare tok/s (median) "
        "| app tok/s (median) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for client, points in summary.items():
        for c, p in sorted(points.items(), key=lambda kv: int(kv[0])):

            def cell(key: str, fmt: str = "{:+.1f}", p: dict = p) -> str:
                s = p[key]
                return f"{_g(s['median'], fmt)} ({_g(s['min'], fmt)} to {_g(s['max'], fmt)})"

            lines.append(
                f"| {client} | {c} | {p['rounds']} | {cell('throughput_ratio', '{:.3f}')} | "
                f"{cell('ttft_p50_ms_delta')} | {cell('ttft_p99_ms_delta')} | "
                f"{cell('tpot_p50_ms_delta', '{:+.2f}')} | {cell('itl_p50_ms_delta', '{:+.2f}')} | "
                f"{_g(p['bare']['output_throughput']['median'], '{:.0f}')} | "
                f"{_g(p['app']['output_throughput']['median'], '{:.0f}')} |"
            )
    lines.append(f"\n(from `{folder}/*/c*-r*-*.summary.json`, summarized into `fair.json`)")
    return "\n".join(lines) + "\n"


@app.command("summarize")
def summarize_command(folder: Path) -> None:
    """fair.json and fair.md from every round summary under FOLDER (any client)."""
    rows = [json.loads(p.read_text()) for p in sorted(folder.glob("*/c*-r*-*.summary.json"))]
    if not rows:
        typer.echo(f"no round summaries under {folder}", err=True)
        raise typer.Exit(1)
    summary = summarize_rounds(rows)
    body = {"summary": summary, "targets": verdicts(summary)}
    (folder / "fair.json").write_text(json.dumps(body, indent=1) + "\n")
    text = markdown(summary, folder.name)
    text += "\n| client | c | target | median | met |\n|---|---|---|---|---|\n"
    for v in body["targets"]:
        text += (f"| {v['client']} | {v['concurrency']} | {v['metric']} {v['target']} | "
                 f"{_g(v['median'], '{:.3f}')} | "
                 f"{'met' if v['met'] else 'MISSED'} |\n")  # fmt: skip
    (folder / "fair.md").write_text(text)
    typer.echo(text)


if __name__ == "__main__":
    sys.exit(app())
