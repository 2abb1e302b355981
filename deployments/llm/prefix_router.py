"""Prefix-affinity replica choice for LLM pools with more than one replica (Ray Serve's
request-router API; a recipe's `routing.policy: prefix_affinity` renders it).

vLLM's prefix cache lives in one replica: a request whose prompt begins like an earlier one is
cheap only on the replica that served the earlier one. The router runs in the caller (the
Gateway replica) and remembers, per block of prompt text, the replicas that were sent a prompt
starting with it. A request goes to the replica holding the longest run of its leading blocks,
unless that replica's queue is longer than the shortest by more than `imbalance_threshold`: then
(and when no replica holds any block) to the least-loaded one. The idea is Ray Serve LLM's
PrefixCacheAffinityRouter; this one keeps its state in the router itself (one dict of chained
block hashes, LRU-bounded) instead of a prefix-tree actor, so a choice costs no actor call.

A request's CallContext may ask for `power_of_two` (Serve's default procedure): A/B runs send
both policies through one pool in the same run.
"""

from __future__ import annotations

import json
import logging
import random
from collections import OrderedDict
from typing import Any

from ray.serve._private.request_router import PowerOfTwoChoicesRequestRouter
from ray.serve.request_router import (
    LocalityMixin,
    MultiplexMixin,
    PendingRequest,
    ReplicaID,
    RequestRouter,
    RunningReplica,
)

POWER_OF_TWO = "power_of_two"
logger = logging.getLogger("ray.serve")


def prompt_text(body: dict[str, Any]) -> str:
    """The text a chat or completion request's prompt is built from, in prompt order (tools
    first: chat templates put their schemas in the system turn)."""
    if "messages" in body:
        parts = [json.dumps(body["tools"], sort_keys=True)] if body.get("tools") else []
        for message in body["messages"]:
            parts.append(str(message.get("role", "")))
            parts.append(_content_text(message.get("content")))
            if message.get("tool_calls"):
                parts.append(json.dumps(message["tool_calls"], sort_keys=True))
        return "\x1e".join(parts)
    prompt = body.get("prompt", "")
    return prompt if isinstance(prompt, str) else json.dumps(prompt)


def _content_text(content: Any) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))


def block_hashes(text: str, block_chars: int) -> list[int]:
    """One hash per whole block of `block_chars` characters, each chained to the ones before
    it: equal hashes at position i mean equal prompts up to block i (within this process)."""
    hashes: list[int] = []
    chained = 0
    for start in range(0, len(text) - block_chars + 1, block_chars):
        chained = hash((chained, text[start : start + block_chars]))
        hashes.append(chained)
    return hashes


class PrefixIndex:
    """Which replicas were sent each prefix block; the least recently used blocks go first."""

    def __init__(self, max_blocks: int):
        self.max_blocks = max_blocks
        self._holders: OrderedDict[int, set[Any]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._holders)

    def record(self, hashes: list[int], replica: Any) -> None:
        for h in hashes:
            holders = self._holders.get(h)
            if holders is None:
                self._holders[h] = {replica}
            else:
                holders.add(replica)
                self._holders.move_to_end(h)
        while len(self._holders) > self.max_blocks:
            self._holders.popitem(last=False)

    def longest_match(self, hashes: list[int], candidates: set[Any]) -> tuple[set[Any], int]:
        """The candidates holding the longest run of leading blocks, and its length."""
        best: set[Any] = set()
        depth = 0
        alive = set(candidates)
        for h in hashes:
            alive &= self._holders.get(h, set())
            if not alive:
                break
            best, depth = set(alive), depth + 1
        return best, depth

    def forget(self, replica: Any) -> None:
        for h in [h for h, holders in self._holders.items() if replica in holders]:
            holders = self._holders[h]
            holders.discard(replica)
            if not holders:
                del self._holders[h]


class PrefixAffinityRouter(LocalityMixin, MultiplexMixin, RequestRouter):
    """No FIFOMixin on purpose: a routing task must place the request it chose a replica for,
    not the oldest pending one (whose prefix lives elsewhere)."""

    def initialize_state(
        self,
        imbalance_threshold: int = 4,
        block_chars: int = 256,
        max_blocks: int = 100_000,
        metrics: bool = True,
    ) -> None:
        self.imbalance_threshold = imbalance_threshold
        self.block_chars = block_chars
        self.index = PrefixIndex(max_blocks)
        self._decisions = None
        if metrics:
            # Never raise here: Serve builds the router inside the handle's shared long-poll
            # callback, and an exception there leaves every pool of the caller unroutable.
            try:
                from telemetry.metrics import llm_routing_total

                self._decisions = llm_routing_total()
            except Exception:
                logger.exception("prefix router: decisions metric unavailable")

    def _hashes(self, pending: PendingRequest | None) -> list[int] | None:
        if pending is None or not pending.args or not isinstance(pending.args[0], dict):
            return None
        return block_hashes(prompt_text(pending.args[0]), self.block_chars)

    @staticmethod
    def _policy(pending: PendingRequest | None) -> str | None:
        if pending is None or len(pending.args) < 2:
            return None
        return getattr(pending.args[1], "routing", None)

    def _count(self, decision: str) -> None:
        if self._decisions is not None:
            name = self._deployment_id.name if self._deployment_id else ""
            self._decisions.inc(1, tags={"pool": name, "decision": decision})

    async def _queue_lens(self, replicas: list[RunningReplica]) -> dict[ReplicaID, int]:
        """Queue lengths from the router's cache; replicas missing from it are probed."""
        cache = self.replica_queue_len_cache
        lens: dict[ReplicaID, int] = {}
        missing = []
        for r in replicas:
            q = cache.get(r.replica_id)
            if q is None:
                missing.append(r)
            else:
                lens[r.replica_id] = q
        if missing:
            for r, q in await self._probe_queue_lens(missing, 0):
                if q is not None:
                    lens[r.replica_id] = q
        return lens

    async def choose_replicas(
        self,
        candidate_replicas: list[RunningReplica],
        pending_request: PendingRequest | None = None,
    ) -> list[list[RunningReplica]]:
        if self._policy(pending_request) == POWER_OF_TWO:
            self._count(POWER_OF_TWO)
            return await PowerOfTwoChoicesRequestRouter.choose_replicas(
                self, candidate_replicas, pending_request
            )
        hashes = self._hashes(pending_request)
        if hashes is None or len(candidate_replicas) < 2:
            return [candidate_replicas]
        lens = await self._queue_lens(candidate_replicas)
        # A replica whose queue length is unknown (its probe failed) is tried last.
        known = [r for r in candidate_replicas if r.replica_id in lens]
        if not known:
            return [candidate_replicas]
        shortest = min(lens[r.replica_id] for r in known)
        least_loaded = [r for r in known if lens[r.replica_id] == shortest]
        random.shuffle(least_loaded)
        holders, _ = self.index.longest_match(hashes, {r.replica_id for r in known})
        best = [r for r in known if r.replica_id in holders]
        if best:
            best.sort(key=lambda r: lens[r.replica_id])
            if lens[best[0].replica_id] - shortest <= self.imbalance_threshold:
                self._count("affinity")
                rest = [r for r in candidate_replicas if r not in best]
                return [best, sorted(rest, key=lambda r: lens.get(r.replica_id, 1 << 30))]
        self._count("least_loaded")
        rest = [r for r in candidate_replicas if r not in least_loaded]
        return [least_loaded, sorted(rest, key=lambda r: lens.get(r.replica_id, 1 << 30))]

    def on_request_routed(
        self, pending_request: PendingRequest, replica_id: ReplicaID, result: Any
    ) -> None:
        # Power-of-two requests are recorded too: the index follows what replicas hold.
        hashes = self._hashes(pending_request)
        if hashes:
            self.index.record(hashes, replica_id)

    def on_replica_actor_died(self, replica_id: ReplicaID) -> None:
        super().on_replica_actor_died(replica_id)
        self.index.forget(replica_id)

    def update_replicas(self, replicas: list[RunningReplica]) -> None:
        before = set(self._replica_id_set)
        super().update_replicas(replicas)
        for gone in before - set(self._replica_id_set):
            self.index.forget(gone)
