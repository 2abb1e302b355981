"""The GPU results summarizer and the benchmark helpers: what they read and write."""

from __future__ import annotations

import json

import pytest

from ops.bench import common
from ops.gpu import summarize
from recipes.paths import RESULTS_ROOT

STORED_RUN = RESULTS_ROOT / "gpu-2026-11-24"


def test_cold_starts_read_from_a_stored_app_log():
    rows = summarize.cold_starts(STORED_RUN / "app-h100x1-proof.log")
    assert rows[:2] == ["| deployment | deploy to healthy, s |", "|---|---|"]
    assert "| Gateway | 7.4 |" in rows
    assert "| embed-minilm-h100 | 26.7 |" in rows
    assert "| llm-llama3-8b-proof-h100 | 135.2 |" in rows
    assert rows[-1] == "| whole application | 135.2 |"
    assert summarize.cold_starts(STORED_RUN / "missing.log") == ["(no app log)"]


def test_vram_by_deployment_follows_the_engine_process_parent(tmp_path):
    (tmp_path / "recipes-h100x1-proof.txt").write_text(
        "llm-llama3-8b-proof-h100@5 embed-minilm-h100@2\n"
    )
    (tmp_path / "vram-by-process.txt").write_text(
        " 840 MiB ray::ServeReplica:platform:embed-minilm-h100\n"
        " 24706 MiB VLLM::EngineCore parent=1234 python3 -m vllm.entrypoints.openai.api_server\n"
        " 18804 MiB VLLM::EngineCore parent=2168 ray::ServeReplica:platform:llm-llama3-8b\n"
        "garbage line\n"
    )
    vram = summarize.vram_by_deployment(tmp_path)
    assert vram == {
        "embed-minilm-h100": pytest.approx(840 / 1024),
        "llm-llama3-8b-proof-h100": pytest.approx(18804 / 1024),
    }


def test_compare_section_quotes_the_ratios():
    side = {
        "completed": 10,
        "requests": 10,
        "output_throughput": 1234.4,
        "ttft_s": {"p50": 0.0125, "p99": 0.05},
        "tpot_s": {"p50": 0.011, "p99": 0.02},
        "e2el_s": {"p50": 1.5},
    }
    body = {
        "sides": {"A": side, "B": {**side, "output_throughput": 1200.0}},
        "ratios": {
            "output_throughput_b_over_a": 0.97214,
            "ttft_p50_ms_b_minus_a": 3.25,
            "ttft_p99_ms_b_minus_a": -1.0,
            "tpot_p50_ms_b_minus_a": 0.125,
            "tpot_p99_ms_b_minus_a": None,
        },
        "rounds": 3,
    }
    lines = summarize.compare_section("P1", body, "bare", "app")
    assert lines[0] == "### P1"
    assert "| bare | 10/10 | 1234 | 12.5 | 50.0 | 11.0 | 20.0 | 1500.0 |" in lines
    text = "\n".join(lines)
    assert "app / bare: **0.972**" in text and "**+3.2 ms**" in text
    assert "TPOT p50: **+0.12 ms** (p99 - ms). 3 interleaved rounds per side." in text
    assert summarize.compare_section("P1", None, "a", "b")[2] == "Not run."


def test_bench_sentences_are_deterministic_and_bounded():
    first = common.sentences(50, min_words=10, max_words=60, seed=7)
    assert first == common.sentences(50, min_words=10, max_words=60, seed=7)
    assert first != common.sentences(50, min_words=10, max_words=60, seed=8)
    assert all(10 <= len(s.split()) <= 60 and s.endswith(".") for s in first)


def test_bench_table_and_result_files(tmp_path, monkeypatch):
    table = common.markdown_table(["size", "texts/s"], [[1, 1234.5678], [16, 99.0]])
    assert table.splitlines() == [
        "| size | texts/s |",
        "|---|---|",
        "| 1 | 1,234.57 |",
        "| 16 | 99.00 |",
    ]
    monkeypatch.setattr(common, "RESULTS_DIR", tmp_path)
    path = common.write_result("bench", {"table": table, "rate": 1.5})
    written = json.loads(path.read_text())
    assert written["rate"] == 1.5 and written["environment"]["cpus"] >= 1
    assert (tmp_path / "bench" / "latest.md").read_text() == table + "\n"
