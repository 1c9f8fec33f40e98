"""Approximate prefix-cache index: which endpoint probably holds which prompt blocks.

"Assume it is cached where we sent it": after each pick, the request's block hashes are
recorded for the chosen endpoint. Each endpoint has an LRU of hashes sized like its KV cache
(``num_gpu_blocks × block_size`` tokens from ``vllm:cache_config_info``, in index blocks),
and a reverse map ``hash → bitmask of endpoints`` makes a lookup cost O(prompt blocks)
integer operations, whatever the number of endpoints: the walk keeps the set of endpoints
that matched every block so far and stops when it is empty.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

__all__ = ["PrefixIndex"]


def _bits(x: int) -> list[int]:
    out = []
    while x:
        low = x & -x
        out.append(low.bit_length() - 1)
        x ^= low
    return out


class PrefixIndex:
    """Per-endpoint LRU of block hashes plus a reverse map to endpoint bitmasks."""

    def __init__(self, default_capacity: int = 31_250) -> None:
        if default_capacity < 1:
            raise ValueError("capacity must be positive")
        self.default_capacity = default_capacity
        self._lru: list[OrderedDict[int, None]] = []
        self._cap: list[int] = []
        self._rev: dict[int, int] = {}
        self.lookups = 0
        self.hit_blocks = 0
        self.query_blocks = 0

    def _ensure(self, ep: int) -> None:
        while len(self._lru) <= ep:
            self._lru.append(OrderedDict())
            self._cap.append(self.default_capacity)

    def set_capacity(self, ep: int, capacity: int) -> None:
        self._ensure(ep)
        self._cap[ep] = max(1, capacity)
        self._trim(ep)

    def capacity(self, ep: int) -> int:
        self._ensure(ep)
        return self._cap[ep]

    def __len__(self) -> int:
        """Entries over all endpoints (the EPP's ``prefix_indexer_size``)."""
        return sum(len(x) for x in self._lru)

    def size(self, ep: int) -> int:
        return len(self._lru[ep]) if ep < len(self._lru) else 0

    def match_runs(self, hashes: Sequence[int], candidates_mask: int = -1) -> list[tuple[int, int]]:
        """``[(endpoint bitmask, leading blocks matched)]``: the walk's raw result, one pair per
        point where some endpoints stopped matching (cheap to expand in bulk)."""
        self.lookups += 1
        n = len(hashes)
        self.query_blocks += n
        if not n:
            return []
        rev = self._rev
        alive = rev.get(hashes[0], 0) & candidates_mask
        if not alive:
            return []
        runs: list[tuple[int, int]] = []
        i = 1
        get = rev.get
        while i < n:
            nxt = alive & get(hashes[i], 0)
            if nxt != alive:
                runs.append((alive & ~nxt, i))
                alive = nxt
                if not alive:
                    break
            i += 1
        if alive:
            runs.append((alive, n))
        self.hit_blocks += runs[-1][1]
        return runs

    def match(self, hashes: Sequence[int], candidates_mask: int = -1) -> dict[int, int]:
        """``{endpoint: number of leading blocks it holds}`` for endpoints holding ≥ 1."""
        out: dict[int, int] = {}
        for mask, n in self.match_runs(hashes, candidates_mask):
            for ep in _bits(mask):
                out[ep] = n
        return out

    def insert(self, ep: int, hashes: Sequence[int]) -> None:
        """Record that ``ep`` now holds these blocks (most recent last)."""
        self._ensure(ep)
        lru = self._lru[ep]
        rev = self._rev
        bit = 1 << ep
        for h in hashes:
            if h in lru:
                lru.move_to_end(h)
            else:
                lru[h] = None
                rev[h] = rev.get(h, 0) | bit
        self._trim(ep)

    def _trim(self, ep: int) -> None:
        lru = self._lru[ep]
        cap = self._cap[ep]
        if len(lru) <= cap:
            return
        rev = self._rev
        clear = ~(1 << ep)
        while len(lru) > cap:
            old, _ = lru.popitem(last=False)
            r = rev[old] & clear
            if r:
                rev[old] = r
            else:
                del rev[old]

    def remove(self, ep: int, hashes: Sequence[int]) -> None:
        """Forget specific blocks on an endpoint (precise mode: a ``BlockRemoved`` event)."""
        if ep >= len(self._lru):
            return
        lru = self._lru[ep]
        clear = ~(1 << ep)
        for h in hashes:
            if lru.pop(h, 1) is None:
                r = self._rev.get(h, 0) & clear
                if r:
                    self._rev[h] = r
                else:
                    self._rev.pop(h, None)

    def clear(self, ep: int) -> None:
        """Forget everything about one endpoint (it restarted or left)."""
        if ep < len(self._lru):
            self.remove(ep, list(self._lru[ep]))

    @property
    def hit_ratio(self) -> float:
        return self.hit_blocks / self.query_blocks if self.query_blocks else 0.0
