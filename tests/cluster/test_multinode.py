"""Two Ray nodes (`ray start --head` and `ray start --address`) with pools placed by the custom
resources the recipe set `cpu-two-node` renders (`placement`): the embeddings pool on the
worker, the Gateway and the rerank pool on the head. Removing the worker leaves embeddings
answering a clear 503 while rerank keeps serving; a node that returns brings the pool back.
Draining a node (a preemption notice) moves its pool to a spare node without losing a request."""

from __future__ import annotations

import time

import httpx
import pytest

from ops.recipes.render import rendered_path
from tests.cluster.conftest import HTTP_PORT, RAY_BASE_PORT, base_url, cluster_env
from tests.cluster.test_faults import Load, assert_clean_503, embed, probe, wait_until
from tests.raycluster import RayCluster, config_on_port, replica_pids, wait_ready

CONFIG = rendered_path("cpu-two-node")
EMBED, RERANK = "embed-minilm-cpu", "rerank-minilm-cpu"
pytestmark = pytest.mark.timeout(1500)


def rerank() -> httpx.Response:
    return httpx.post(
        f"{base_url()}/v1/rerank",
        json={"model": "minilm-rerank", "query": "cat", "documents": ["a kitten", "an invoice"]},
        timeout=60,
    )


@pytest.fixture(scope="module")
def two_nodes(tmp_path_factory):
    cluster = RayCluster(RAY_BASE_PORT + 30, cluster_env(HTTP_PORT))
    try:
        cluster.start_node("head", num_cpus=1, resources={"platform-head": 1})
        cluster.wait_for_dashboard()
        cluster.start_node("worker", num_cpus=1, resources={"pool-embed": 1})
        config = config_on_port(CONFIG, HTTP_PORT, cluster.temp_dir / "two-node.yaml")
        deployed = cluster.serve("deploy", str(config))
        assert deployed.returncode == 0, deployed.stderr
        wait_ready(base_url(), timeout_s=600)
        yield cluster
    finally:
        cluster.stop()


def test_pools_run_on_the_nodes_their_resources_name(two_nodes):
    head, worker = two_nodes.nodes
    assert replica_pids(worker.sid, EMBED) and not replica_pids(head.sid, EMBED)
    assert replica_pids(head.sid, RERANK) and not replica_pids(worker.sid, RERANK)
    assert replica_pids(head.sid, "Gateway")
    assert embed(2).status_code == 200 and rerank().status_code == 200


def test_node_removal_503_while_gone_others_serve_and_recovery(two_nodes, fault_rows):
    _, worker = two_nodes.nodes
    with Load(rerank, threads=2) as other_pool:
        time.sleep(2)
        t_lost = time.monotonic()
        two_nodes.kill_node(worker)  # the node is lost at once (every process SIGKILLed)
        gone = wait_until(
            lambda: (
                (r := probe(lambda: embed(2, timeout=5))) is not None and r.status_code == 503 and r
            ),
            timeout_s=120,
        )
        detected_s = time.monotonic() - t_lost
        assert_clean_503(gone)
        message = gone.json()["error"]["message"]
        assert f"Pool '{EMBED}'" in message, message
        # Still 503 (at once, not a wait) while no node can hold the pool.
        time.sleep(5)
        still = probe(lambda: embed(2, timeout=5))
        assert still is not None and still.status_code == 503, "embeddings queued instead of 503"
        t_back = time.monotonic()
        two_nodes.start_node("worker2", num_cpus=1, resources={"pool-embed": 1})
        wait_until(
            lambda: (r := probe(lambda: embed(2, timeout=5))) is not None and r.status_code == 200,
            timeout_s=300,
            poll_s=1,
        )
        recover_s = time.monotonic() - t_back
    statuses = other_pool.statuses()
    assert set(statuses) == {200}, [o for o in other_pool.outcomes if o[1] != 200][:5]
    fault_rows.append(
        {
            "fault": "worker node holding the embeddings pool lost (all its processes SIGKILLed)",
            "in_flight": other_pool.threads,
            "failed": 0,
            "clean_errors": f"embeddings 503 + Retry-After after {detected_s:.1f} s: "
            f"{message[:160]}",
            "recover_s": recover_s,
            "note": f"time from a new node with resource pool-embed; rerank on the head: "
            f"{statuses[200]} requests, all 200",
        }
    )


def test_a_drained_node_hands_its_pool_over_without_losing_a_request(two_nodes, fault_rows):
    holder = next(n for n in two_nodes.nodes if replica_pids(n.sid, EMBED))
    spare = two_nodes.start_node("spare", num_cpus=1, resources={"pool-embed": 1})
    deadline_s = 120
    with Load(lambda: embed(2, timeout=60), threads=4) as load:
        time.sleep(3)
        t_drain = time.monotonic()
        two_nodes.drain_node(holder, deadline_s)
        wait_until(lambda: bool(replica_pids(spare.sid, EMBED)), timeout_s=deadline_s, poll_s=1)
        wait_until(lambda: not replica_pids(holder.sid, EMBED), timeout_s=deadline_s, poll_s=1)
        moved_s = time.monotonic() - t_drain
        time.sleep(3)  # requests keep going to the new replica
    left = two_nodes.stop_node(holder)  # the deadline's end: the node goes away
    statuses = load.statuses()
    failed = sum(n for status, n in statuses.items() if status != 200)
    assert failed == 0, [o for o in load.outcomes if o[1] != 200][:5]
    assert embed(2).status_code == 200
    fault_rows.append(
        {
            "fault": f"node holding the embeddings pool drained (ray drain-node, preemption, "
            f"{deadline_s} s deadline), then stopped",
            "in_flight": load.threads,
            "failed": failed,
            "clean_errors": "-",
            "recover_s": moved_s,
            "note": f"replica moved to a spare node with pool-embed before the old one stopped; "
            f"{statuses.get(200, 0)} requests, all 200; {len(left)} processes needed SIGKILL",
        }
    )
