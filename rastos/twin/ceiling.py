"""The pooled prefix-cache ceiling: one LRU cache with the whole fleet's KV capacity.

The best hit rate any router could reach on a request stream is bounded by what a single cache
of the fleet's total size would hit; reports show a policy's hit rate beside it.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable

__all__ = ["PooledCeiling"]


class PooledCeiling:
    """Hit rate of one LRU cache with the fleet's total KV capacity, fed the request stream."""

    def __init__(self, capacity_blocks: int) -> None:
        self.capacity = capacity_blocks
        self.lru: OrderedDict[int, None] = OrderedDict()
        self.hits = 0
        self.queries = 0

    def lookup_and_insert(self, prompt_hashes: list[int], num_tokens: int, block_size: int) -> None:
        """A prompt arrives: count its leading cached blocks (all but its last token may
        hit, as in the engine), then cache its blocks."""
        lru = self.lru
        max_blocks = (num_tokens - 1) // block_size
        n = 0
        for h in prompt_hashes[:max_blocks]:
            if h not in lru:
                break
            n += 1
        self.hits += n * block_size
        self.queries += num_tokens
        self.insert(prompt_hashes)

    def insert(self, hashes: Iterable[int]) -> None:
        lru = self.lru
        for h in hashes:
            if h in lru:
                lru.move_to_end(h)
            else:
                lru[h] = None
        while len(lru) > self.capacity:
            lru.popitem(last=False)

    @property
    def rate(self) -> float:
        return self.hits / self.queries if self.queries else 0.0
