"""Approximate prefix-cache index: which endpoint probably holds which prompt blocks.

"Assume it is cached where we sent it": after each pick, the request's block hashes are
recorded for the chosen endpoint. Each endpoint has an LRU of hashes sized like its KV cache
(``num_gpu_blocks × block_size`` tokens from ``vllm:cache_config_info``, in index blocks),
and a reverse map ``hash → bitmask of endpoints`` makes a lookup cost O(prompt blocks)
word operations, whatever the number of endpoints: the walk keeps the set of endpoints
that matched every block so far and stops when it is empty.

The structures are arrays and the loops compiled (:mod:`rastos.sched.prefix_native`): a
lookup and an insert touch a hundred-odd hashes per request, and as Python dicts and
``OrderedDict`` LRUs over a big fleet each was a chain of cache misses (the largest single
cost of a 100-engine twin run). This class keeps the arrays, grows them, and speaks Python
ints (hashes are 64-bit; a wider int is taken modulo 2⁶⁴).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from rastos.sched import prefix_native as nat

__all__ = ["PrefixIndex"]

_M64 = (1 << 64) - 1


def _bits(x: int) -> list[int]:
    out = []
    while x:
        low = x & -x
        out.append(low.bit_length() - 1)
        x ^= low
    return out


def _keys(hashes: Sequence[int] | np.ndarray) -> np.ndarray:
    if isinstance(hashes, np.ndarray):
        return np.ascontiguousarray(hashes, dtype=np.uint64).view(np.int64)
    try:
        return np.array(hashes, dtype=np.uint64).view(np.int64)
    except OverflowError:
        return np.array([h & _M64 for h in hashes], dtype=np.uint64).view(np.int64)


def _ext(a: np.ndarray, n: int, fill: int | bool) -> np.ndarray:
    """``a`` grown to ``n`` rows, the new ones set to ``fill``."""
    new = np.full((n - a.shape[0], *a.shape[1:]), fill, dtype=a.dtype)
    return np.concatenate((a, new))


_warm = False


def _warm_up() -> None:
    """Compile (or load from numba's cache) every kernel once: a gateway is ready only when
    its first decision will not wait for the compiler."""
    global _warm
    _warm = True
    idx = PrefixIndex(2)
    idx.insert(0, list(range(600)))  # past the initial arrays: the growth paths too
    idx.insert(0, [1, 2, 3])
    idx.match([2, 3])
    idx.remove(0, [3])
    idx.clear(0)


class PrefixIndex:
    """Per-endpoint LRU of block hashes plus a reverse map to endpoint bitmasks."""

    def __init__(self, default_capacity: int = 31_250) -> None:
        if default_capacity < 1:
            raise ValueError("capacity must be positive")
        self.default_capacity = default_capacity
        self.lookups = 0
        self.hit_blocks = 0
        self.query_blocks = 0
        self._ecap = 64
        self._meta = np.zeros(3, dtype=np.int64)
        self.head = np.full(64, -1, dtype=np.int32)
        self.tail = np.full(64, -1, dtype=np.int32)
        self.sizes = np.zeros(64, dtype=np.int64)
        self.caps = np.full(64, default_capacity, dtype=np.int64)
        self.kslot = np.full(1024, -1, dtype=np.int32)
        i32 = np.zeros(0, dtype=np.int32)
        self.rkey = np.zeros(0, dtype=np.int64)
        self.rmask = np.zeros((0, 1), dtype=np.uint64)
        self.rhead, self.ralive, self.rfree = i32, np.zeros(0, dtype=np.bool_), i32
        self.nrow = self.nep = self.nprev = self.nnext = self.nrnext = self.nfree = i32
        self._grow_rows(256)
        self._grow_nodes(256)
        if not _warm:
            _warm_up()

    # ------------------------------------------------------------------ storage
    def _grow_rows(self, n: int) -> None:
        old = self.rkey.shape[0]
        self.rkey = _ext(self.rkey, n, 0)
        self.rmask = _ext(self.rmask, n, 0)
        self.rhead = _ext(self.rhead, n, -1)
        self.ralive = _ext(self.ralive, n, False)
        self.rfree = self._grow_stack(self.rfree, nat.RFREE, old, n)

    def _grow_nodes(self, n: int) -> None:
        old = self.nrow.shape[0]
        self.nrow = _ext(self.nrow, n, 0)
        self.nep = _ext(self.nep, n, -1)
        self.nprev = _ext(self.nprev, n, -1)
        self.nnext = _ext(self.nnext, n, -1)
        self.nrnext = _ext(self.nrnext, n, -1)
        self.nfree = self._grow_stack(self.nfree, nat.NFREE, old, n)

    def _grow_stack(self, stack: np.ndarray, count: int, old: int, n: int) -> np.ndarray:
        """The free stack ``meta[count]`` deep, with room for all ``n`` items and the new ones
        ``old..n-1`` pushed under the free ones (popped from the top: freed first, then the
        lowest new index)."""
        free = stack[: self._meta[count]]
        grown = np.empty(n, dtype=np.int32)
        grown[: n - old] = np.arange(n - 1, old - 1, -1, dtype=np.int32)
        grown[n - old : n - old + free.shape[0]] = free
        self._meta[count] = n - old + free.shape[0]
        return grown

    def _room(self, n: int) -> None:
        """Make room for ``n`` more rows and nodes, the hash table staying under half full."""
        meta = self._meta
        rows, nodes = self.rkey.shape[0], self.nrow.shape[0]
        if meta[nat.RFREE] < n:
            self._grow_rows(max(2 * rows, rows + n))
        if meta[nat.NFREE] < n:
            self._grow_nodes(max(2 * nodes, nodes + n))
        if 2 * (meta[nat.K_USED] + n) > self.kslot.shape[0]:
            live = self.rkey.shape[0] - int(meta[nat.RFREE])
            size = self.kslot.shape[0]
            while size < 4 * (live + n):
                size *= 2
            self.kslot = np.full(size, -1, dtype=np.int32)
            nat.rebuild_table(self.kslot, self.rkey, self.ralive, meta)

    def _ensure(self, ep: int) -> None:
        if ep >= self._ecap:
            ecap = self._ecap
            while ecap <= ep:
                ecap *= 2
            self.head = _ext(self.head, ecap, -1)
            self.tail = _ext(self.tail, ecap, -1)
            self.sizes = _ext(self.sizes, ecap, 0)
            self.caps = _ext(self.caps, ecap, self.default_capacity)
            mask = np.zeros((self.rmask.shape[0], ecap // 64), dtype=np.uint64)
            mask[:, : self.rmask.shape[1]] = self.rmask
            self.rmask = mask
            self._ecap = ecap

    def _state(self) -> tuple:
        return (self.kslot, self.rkey, self.rmask, self.rhead, self.ralive, self.rfree, self.nrow, self.nep,
                self.nprev, self.nnext, self.nrnext, self.nfree, self.head, self.tail, self.sizes)  # fmt: skip

    # ------------------------------------------------------------------ public surface
    def set_capacity(self, ep: int, capacity: int) -> None:
        self._ensure(ep)
        self.caps[ep] = max(1, capacity)
        nat.trim(ep, *self._state(), self.caps, self._meta)

    def capacity(self, ep: int) -> int:
        self._ensure(ep)
        return int(self.caps[ep])

    def __len__(self) -> int:
        """Entries over all endpoints (the EPP's ``prefix_indexer_size``)."""
        return int(self.sizes.sum())

    def size(self, ep: int) -> int:
        return int(self.sizes[ep]) if ep < self._ecap else 0

    def match_runs(self, hashes: Sequence[int] | np.ndarray, candidates_mask: int = -1) -> list[tuple[int, int]]:
        """``[(endpoint bitmask, leading blocks matched)]``: the walk's raw result, one pair per
        point where some endpoints stopped matching (cheap to expand in bulk)."""
        self.lookups += 1
        n = len(hashes)
        self.query_blocks += n
        if not n:
            return []
        w = self.rmask.shape[1]
        cand = np.frombuffer((candidates_mask & ((1 << (64 * w)) - 1)).to_bytes(8 * w, "little"), dtype=np.uint64)
        out_mask = np.empty((n + 1, w), dtype=np.uint64)
        out_n = np.empty(n + 1, dtype=np.int64)
        nr = nat.match(self.kslot, self.rkey, self.rmask, _keys(hashes), cand, out_mask, out_n)
        if not nr:
            return []
        runs = [(int.from_bytes(out_mask[i].tobytes(), "little"), int(out_n[i])) for i in range(nr)]
        self.hit_blocks += runs[-1][1]
        return runs

    def match(self, hashes: Sequence[int], candidates_mask: int = -1) -> dict[int, int]:
        """``{endpoint: number of leading blocks it holds}`` for endpoints holding ≥ 1."""
        out: dict[int, int] = {}
        for mask, n in self.match_runs(hashes, candidates_mask):
            for ep in _bits(mask):
                out[ep] = n
        return out

    def insert(self, ep: int, hashes: Sequence[int] | np.ndarray) -> None:
        """Record that ``ep`` now holds these blocks (most recent last)."""
        self._ensure(ep)
        keys = _keys(hashes)
        self._room(keys.shape[0])
        nat.insert(ep, keys, *self._state(), self.caps, self._meta)

    def remove(self, ep: int, hashes: Sequence[int]) -> None:
        """Forget specific blocks on an endpoint (precise mode: a ``BlockRemoved`` event)."""
        if ep >= self._ecap or not len(hashes):
            return
        nat.remove(ep, _keys(hashes), *self._state(), self._meta)

    def clear(self, ep: int) -> None:
        """Forget everything about one endpoint (it restarted or left)."""
        if ep >= self._ecap:
            return
        saved = int(self.caps[ep])
        self.caps[ep] = 0
        nat.trim(ep, *self._state(), self.caps, self._meta)
        self.caps[ep] = saved

    @property
    def hit_ratio(self) -> float:
        return self.hit_blocks / self.query_blocks if self.query_blocks else 0.0
