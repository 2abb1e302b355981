"""Prefix reuse by hashing prompt blocks, the way vLLM's prefix cache keys its KV blocks.

A prompt's tokens are cut into blocks of the engine's block size; only full blocks are cached.
Block i's key is a hash of (block i-1's key, block i's tokens), so a block matches only if the
whole prefix before it matches too. A request's cached tokens are the full blocks, from the
start, whose keys are already in the cache (all but the last block when the whole prompt is
cached: the engine computes its last token again); then its blocks are added (least recently used
blocks leave first when the cache holds a limited number of blocks).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

NONE_HASH = b"\0" * 16


def block_hashes(tokens: Sequence[int], block_size: int) -> list[bytes]:
    """Chained keys of the prompt's full blocks."""
    keys, parent = [], NONE_HASH
    for start in range(0, len(tokens) - block_size + 1, block_size):
        block = tokens[start : start + block_size]
        digest = hashlib.blake2b(parent, digest_size=16)
        digest.update(b",".join(str(t).encode() for t in block))
        parent = digest.digest()
        keys.append(parent)
    return keys


@dataclass
class PrefixReuse:
    prompt_tokens: int = 0
    cached_tokens: int = 0

    @property
    def share(self) -> float:
        """Share of prompt tokens a prefix cache could serve."""
        return self.cached_tokens / self.prompt_tokens if self.prompt_tokens else 0.0


class BlockCache:
    """The prefix cache's keys, least recently used first."""

    def __init__(self, block_size: int, capacity_blocks: int | None = None):
        self.block_size = block_size
        self.capacity = capacity_blocks
        self._keys: OrderedDict[bytes, None] = OrderedDict()

    def admit(self, tokens: Sequence[int]) -> int:
        """Tokens of this prompt served from the cache; then the prompt's blocks are cached."""
        keys = block_hashes(tokens, self.block_size)
        hits = 0
        for key in keys:
            if key not in self._keys:
                break
            hits += 1
        if hits and hits * self.block_size == len(tokens):
            hits -= 1  # vLLM computes the last prompt token again (its logits start decoding)
        for key in keys:
            self._keys[key] = None
            self._keys.move_to_end(key)
        while self.capacity is not None and len(self._keys) > self.capacity:
            self._keys.popitem(last=False)
        return hits * self.block_size


def measure(
    prompts: Iterable[Sequence[int]], block_size: int, capacity_blocks: int | None = None
) -> PrefixReuse:
    cache, reuse = BlockCache(block_size, capacity_blocks), PrefixReuse()
    for tokens in prompts:
        reuse.prompt_tokens += len(tokens)
        reuse.cached_tokens += cache.admit(tokens)
    return reuse
