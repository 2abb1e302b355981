"""Turn an unpacked GPU proof folder (ops/gpu/proof.sh) into results/gpu-<date>/: the raw
JSON copied over, and RESULTS.md with the tables issue 8 asks for.

    python -m ops.gpu.summarize /tmp/proof results/gpu-2026-11-24
"""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path
from typing import Any

from ops.recipes.vram import estimate
from recipes.engines import LLMEngineConfig
from recipes.loader import load_recipe, load_set, load_set_recipes
from recipes.schema import Recipe


def _load(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.exists() else None


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.1f}"


def _num(value: float | None, fmt: str = "{:.2f}") -> str:
    return "-" if value is None else fmt.format(value)


def cold_starts(log: Path) -> list[str]:
    if not log.exists():
        return ["(no app log)"]
    lines = []
    for line in log.read_text(errors="replace").splitlines():
        match = re.search(r"\[\s*([0-9.]+)s\] (\S+): HEALTHY", line)
        if match:
            lines.append(f"| {match.group(2)} | {float(match.group(1)):.1f} |")
        match = re.match(r"ready in ([0-9.]+)s", line)
        if match:
            lines.append(f"| whole application | {float(match.group(1)):.1f} |")
    return ["| deployment | deploy to healthy, s |", "|---|---|", *lines]


def side_row(label: str, s: dict[str, Any]) -> str:
    return (
        f"| {label} | {s['completed']}/{s['requests']} | {s['output_throughput']:.0f} | "
        f"{_ms(s['ttft_s']['p50'])} | {_ms(s['ttft_s']['p99'])} | {_ms(s['tpot_s']['p50'])} | "
        f"{_ms(s['tpot_s']['p99'])} | {_ms(s['e2el_s']['p50'])} |"
    )


SIDE_HEAD = [
    "| | ok/sent | output tok/s | TTFT p50 ms | TTFT p99 ms | TPOT p50 ms | TPOT p99 ms "
    "| E2EL p50 ms |",
    "|---|---|---|---|---|---|---|---|",
]


def compare_section(title: str, body: dict[str, Any] | None, a: str, b: str) -> list[str]:
    if body is None:
        return [f"### {title}", "", "Not run.", ""]
    r = body["ratios"]
    return [
        f"### {title}",
        "",
        *SIDE_HEAD,
        side_row(a, body["sides"]["A"]),
        side_row(b, body["sides"]["B"]),
        "",
        f"Output throughput {b} / {a}: **{_num(r['output_throughput_b_over_a'], '{:.3f}')}**; "
        f"TTFT p50 {b} - {a}: **{_num(r['ttft_p50_ms_b_minus_a'], '{:+.1f}')} ms** "
        f"(p99 {_num(r['ttft_p99_ms_b_minus_a'], '{:+.1f}')} ms); TPOT p50: "
        f"**{_num(r['tpot_p50_ms_b_minus_a'], '{:+.2f}')} ms** "
        f"(p99 {_num(r['tpot_p99_ms_b_minus_a'], '{:+.2f}')} ms). {body['rounds']} interleaved "
        "rounds per side.",
        "",
    ]


def vllm_bench_section(proof: Path) -> list[str]:
    files = sorted((proof / "vllm-bench").glob("*.json"))
    ours = _load(proof / "loadgen-vs-vllm-bench" / "summary.json")
    if not files or ours is None:
        return ["Not run.", ""]
    vb = json.loads(files[-1].read_text())
    mine = ours["summary"]["p1"]
    rows = [
        ("output tok/s", vb.get("output_throughput"), mine["output_throughput"], 1.0),
        ("request/s", vb.get("request_throughput"), mine["request_throughput"], 1.0),
        ("TTFT p50 ms", vb.get("median_ttft_ms"), mine["ttft_s"]["p50"], 1000.0),
        ("TTFT p99 ms", vb.get("p99_ttft_ms"), mine["ttft_s"]["p99"], 1000.0),
        ("TPOT p50 ms", vb.get("median_tpot_ms"), mine["tpot_s"]["p50"], 1000.0),
        ("TPOT p99 ms", vb.get("p99_tpot_ms"), mine["tpot_s"]["p99"], 1000.0),
        ("ITL p50 ms", vb.get("median_itl_ms"), mine["itl_s"]["p50"], 1000.0),
    ]
    lines = ["| metric | vllm bench serve | ops.loadgen | loadgen / vllm |", "|---|---|---|---|"]
    for name, theirs, value, scale in rows:
        value = None if value is None else value * scale
        ratio = value / theirs if theirs and value is not None else None
        lines.append(f"| {name} | {_num(theirs)} | {_num(value)} | {_num(ratio, '{:.3f}')} |")
    return [*lines, ""]


def isolation_section(proof: Path) -> list[str]:
    lines = [
        "| layout | critical alone: TTFT p50 / p99 ms | with batch load: TTFT p50 / p99 ms | "
        "p99 with load / alone | critical TPOT p50 alone / loaded ms | critical within SLO, "
        "loaded | batch output tok/s |",
        "|---|---|---|---|---|---|---|",
    ]
    found = False
    for name in ("dedicated", "shared"):
        alone = _load(proof / f"{name}-alone" / "summary.json")
        loaded = _load(proof / f"{name}-with-batch" / "summary.json")
        if alone is None or loaded is None:
            continue
        found = True
        a, b = alone["summary"]["ttft_critical"], loaded["summary"]["ttft_critical"]
        batch = loaded["summary"].get("batch", {})
        ratio = (
            b["ttft_s"]["p99"] / a["ttft_s"]["p99"]
            if a["ttft_s"]["p99"] and b["ttft_s"]["p99"]
            else None
        )
        lines.append(
            f"| {name} | {_ms(a['ttft_s']['p50'])} / {_ms(a['ttft_s']['p99'])} | "
            f"{_ms(b['ttft_s']['p50'])} / {_ms(b['ttft_s']['p99'])} | {_num(ratio)} | "
            f"{_ms(a['tpot_s']['p50'])} / {_ms(b['tpot_s']['p50'])} | "
            f"{_num(b.get('slo_attainment'), '{:.1%}')} | "
            f"{_num(batch.get('output_throughput'), '{:.0f}')} |"
        )
    return [*lines, ""] if found else ["Not run.", ""]


def embeddings_section(proof: Path) -> list[str]:
    files = sorted((proof / "embeddings").glob("*.json"))
    if not files:
        return ["Not run.", ""]
    body = json.loads(files[-1].read_text())
    return [body["table"], ""]


def history_section(proof: Path) -> list[str]:
    """Earlier runs of P1 with earlier recipe versions, kept as <proof>/history/<label>/p1-c*/."""
    folders = sorted(p for p in (proof / "history").glob("*") if p.is_dir())
    if not folders:
        return []
    lines = [
        "## Earlier P1 runs (earlier recipe versions, same phases)",
        "",
        "| run | concurrency | app/bare throughput | TTFT p50 Δ ms | TPOT p50 Δ ms |",
        "|---|---|---|---|---|",
    ]
    for folder in folders:
        for conc in ("c16", "c64"):
            body = _load(folder / f"p1-{conc}" / "compare.json")
            if body is None:
                continue
            r = body["ratios"]
            lines.append(
                f"| {folder.name} | {conc[1:]} | {_num(r['output_throughput_b_over_a'], '{:.3f}')}"
                f" | {_num(r['ttft_p50_ms_b_minus_a'], '{:+.1f}')} | "
                f"{_num(r['tpot_p50_ms_b_minus_a'], '{:+.2f}')} |"
            )
    notes = proof / "history" / "NOTES.md"
    return [*lines, "", *(notes.read_text().splitlines() if notes.exists() else []), ""]


def measured_recipes(proof: Path) -> list[Recipe]:
    """The recipes the proof run served (written by proof.sh's app phase), else the set's."""
    listed = proof / "recipes-h100x1-proof.txt"
    if not listed.exists():
        listed = proof / "recipes.txt"  # runs before proof.sh named the file by set
    if listed.exists():
        return [load_recipe(ref) for ref in listed.read_text().split()]
    return load_set_recipes(load_set("h100x1-proof"))


def vram_by_deployment(proof: Path) -> dict[str, float]:
    """GiB per deployment from vram-by-process.txt. A Serve replica's row names its deployment;
    a `VLLM::EngineCore` row is the app's when its parent is a ServeReplica, and when the parent
    was not recorded, the row that is not the bare server's (bare budget from bare-flags.txt)."""
    path = proof / "vram-by-process.txt"
    if not path.exists():
        return {}
    out: dict[str, float] = {}
    engines: list[tuple[float, str]] = []
    for line in path.read_text().splitlines():
        match = re.match(r"\s*(\d+) MiB (\S+)(.*)", line)
        if not match:
            continue
        gib, name, rest = int(match.group(1)) / 1024, match.group(2), match.group(3)
        replica = re.search(r"ServeReplica:[^:]+:(\S+)", name)
        if replica:
            out[replica.group(1)] = gib
        elif "EngineCore" in name:
            engines.append((gib, rest))
    llm = [r.id for r in measured_recipes(proof) if isinstance(r.engine, LLMEngineConfig)]
    if not llm:
        return out
    under_serve = [gib for gib, parent in engines if "ServeReplica" in parent]
    if under_serve:
        out[llm[0]] = under_serve[0]
    elif len(engines) == 2 and (proof / "bare-flags.txt").exists():
        util = re.search(r"--gpu-memory-utilization (\S+)", (proof / "bare-flags.txt").read_text())
        total = float(load_recipe(f"{llm[0]}@1").hardware.memory_gib or 0)
        if util and total:
            bare = float(util.group(1)) * total
            out[llm[0]] = max(engines, key=lambda e: abs(e[0] - bare))[0]
    return out


def envelope_section(proof: Path) -> list[str]:
    """Each recipe's expectations (as of the run) beside what the run measured."""
    vram = vram_by_deployment(proof)
    p1 = _load(proof / "p1-c64" / "compare.json")
    embed = sorted((proof / "embeddings").glob("*.json"))
    lines = [
        "| recipe | VRAM expected GiB | VRAM measured GiB | throughput expected | "
        "throughput measured |",
        "|---|---|---|---|---|",
    ]
    for recipe in measured_recipes(proof):
        exp = recipe.dossier.expectations
        measured_tp = "-"
        if isinstance(recipe.engine, LLMEngineConfig) and p1 is not None:
            measured_tp = f"{p1['sides']['B']['output_throughput']:,.0f} output_tokens/s at c=64"
        elif recipe.task == "embed" and embed:
            point = max(json.loads(embed[-1].read_text())["points"], key=lambda p: p["texts_per_s"])
            measured_tp = (
                f"{point['texts_per_s']:,.0f} texts/s at c={point['concurrency']} "
                f"({point['texts_per_request']} texts/request, HTTP)"
            )
        expected_tp = (
            f"{exp.throughput.value:,g} {exp.throughput.unit} at c={exp.throughput.concurrency}"
            if exp.throughput
            else "-"
        )
        expected_vram = _num(exp.vram_gib, "{:.1f}")
        est = estimate(recipe)
        if exp.vram_gib is None and est is not None:
            expected_vram = f"{est.per_gpu_gib:.1f} (estimate; budget {est.budget_gib:.1f})"
        lines.append(
            f"| {recipe.ref} | {expected_vram} | "
            f"{_num(vram.get(recipe.id), '{:.2f}')} | {expected_tp} | {measured_tp} |"
        )
    return [*lines, ""]


def recipe_lines(proof: Path) -> list[str]:
    refs = ", ".join(r.ref for r in measured_recipes(proof))
    lines = [f"- measured: {refs}"]
    for set_id in ("h100x1-mixed-dedicated", "h100x1-mixed-shared"):
        recipe_set = load_set(set_id)
        refs = ", ".join(r.ref for r in load_set_recipes(recipe_set))
        lines.append(f"- `{recipe_set.ref}` (isolation): {refs}")
    return lines


def write(proof: Path, dest: Path, date: str) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for item in proof.iterdir():
        if item.is_dir():
            shutil.copytree(item, dest / item.name, dirs_exist_ok=True)
        elif item.suffix in (".txt", ".csv", ".json", ".log"):
            shutil.copy(item, dest / item.name)
    text = "\n".join(
        [
            f"# GPU proof, {date}",
            "",
            "Hardware: one NVIDIA H100 80GB HBM3 (the lent `nvidia-h100-x1`), 16 CPU cores. "
            "Software: vLLM 0.26.0, Ray 2.60.0, torch 2.11.0+cu130, faster-whisper 1.2.1, "
            "sentence-transformers 6.0.1. Model: Llama-3-8B shape (32 layers, bf16) with "
            "dummy weights (`load_format: dummy`). Recipes:",
            "",
            *recipe_lines(proof),
            "",
            "Reproduce: `ops/gpu/README.md` (the call sequence), `ops/gpu/proof.sh` (each phase).",
            "",
            *(
                ["## Reading these numbers", "", *(proof / "NOTES.md").read_text().splitlines(), ""]
                if (proof / "NOTES.md").exists()
                else []
            ),
            "## Cold start (deploy to healthy)",
            "",
            *cold_starts(proof / "app-h100x1-proof.log"),
            "",
            "## P1: the app's ingress vs bare vLLM, 512 in / 128 out",
            "",
            "A = bare `vllm serve` with the proof recipe's engine flags (`bare-flags.txt`), B = "
            "the app (Gateway → DeploymentHandle → vLLM); same GPU, same call, interleaved "
            "A B A B. Targets: B/A throughput ≥ 0.97, TTFT p50 overhead ≤ 5 ms, TPOT p50 "
            "overhead ≤ 0.3 ms.",
            "",
            *compare_section(
                "Concurrency 16", _load(proof / "p1-c16" / "compare.json"), "bare vLLM", "app"
            ),
            *compare_section(
                "Concurrency 64", _load(proof / "p1-c64" / "compare.json"), "bare vLLM", "app"
            ),
            "## The app vs the same engine in-process",
            "",
            *compare_section(
                "Concurrency 64",
                _load(proof / "inprocess-c64" / "compare.json"),
                "in-process",
                "app",
            ),
            *history_section(proof),
            "## Load generator vs `vllm bench serve` (same server, random 512/128, c=64)",
            "",
            *vllm_bench_section(proof),
            "## Isolation: TTFT-critical traffic beside saturating batch traffic",
            "",
            "TTFT-critical chat (Poisson 4 req/s, 64-256 tokens in, 32 out, streamed) alone, then "
            "beside batch completions (64 in flight, 1024-1536 in, 256 out) for 40 s; "
            "`ops/gpu/scenarios/critical-*.yaml`. Dedicated = `h100x1-mixed-dedicated` (a "
            "critical pool and a batch pool, separate vLLM engines on the same GPU); shared = "
            "`h100x1-mixed-shared` (one pool serves both aliases). Target: dedicated loaded p99 "
            "<= 1.1 x alone.",
            "",
            *isolation_section(proof),
            "## Embeddings on the GPU: HTTP vs in-process",
            "",
            *embeddings_section(proof),
            "## Recipe expectations vs measured (VRAM from NVML, per process)",
            "",
            *envelope_section(proof),
            "## Device memory",
            "",
            "```",
            *(
                (proof / "vram-by-process.txt").read_text().splitlines()
                if (proof / "vram-by-process.txt").exists()
                else ["(not measured)"]
            ),
            "```",
            "",
        ]
    )
    path = dest / "RESULTS.md"
    path.write_text(text)
    return path


if __name__ == "__main__":
    print(write(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3] if len(sys.argv) > 3 else ""))
