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
        self._eps = 0  # endpoints known
        self._ecap = 64
        self._meta = np.zeros(3, dtype=np.int64)
        self.head = np.full(64, -1, dtype=np.int32)
        self.tail = np.full(64, -1, dtype=np.int32)
        self.sizes = np.zeros(64, dtype=np.int64)
        self.caps = np.full(64, default_capacity, dtype=np.int64)
        self.kslot = np.full(1024, -1, dtype=np.int32)
        self._rows = 0
        self._nodes = 0
        self._grow_rows(256)
        self._grow_nodes(256)
        if not _warm:
            _warm_up()

    # ------------------------------------------------------------------ storage
    def _grow_rows(self, n: int) -> None:
        old = self._rows
        w = self._ecap // 64
        if old:
            self.rkey = np.concatenate((self.rkey, np.zeros(n - old, dtype=np.int64)))
            self.rmask = np.concatenate((self.rmask, np.zeros((n - old, w), dtype=np.uint64)))
            self.rhead = np.concatenate((self.rhead, np.full(n - old, -1, dtype=np.int32)))
            self.ralive = np.concatenate((self.ralive, np.zeros(n - old, dtype=np.bool_)))
            free = self.rfree[: self._meta[nat.RFREE]]
        else:
            self.rkey = np.zeros(n, dtype=np.int64)
            self.rmask = np.zeros((n, w), dtype=np.uint64)
            self.rhead = np.full(n, -1, dtype=np.int32)
            self.ralive = np.zeros(n, dtype=np.bool_)
            free = np.zeros(0, dtype=np.int32)
        self.rfree = self._stack(n, old, free)
        self._meta[nat.RFREE] = n - old + free.shape[0]
        self._rows = n

    @staticmethod
    def _stack(n: int, old: int, free: np.ndarray) -> np.ndarray:
        """A free stack with room for all ``n`` (popped from the top: lowest new index first)."""
        stack = np.empty(n, dtype=np.int32)
        stack[: n - old] = np.arange(n - 1, old - 1, -1, dtype=np.int32)
        stack[n - old : n - old + free.shape[0]] = free
        return stack

    def _grow_nodes(self, n: int) -> None:
        old = self._nodes

        def ext(a: np.ndarray | None, fill: int) -> np.ndarray:
            new = np.full(n - old, fill, dtype=np.int32)
            return new if a is None else np.concatenate((a, new))

        first = old == 0
        self.nrow = ext(None if first else self.nrow, 0)
        self.nep = ext(None if first else self.nep, -1)
        self.nprev = ext(None if first else self.nprev, -1)
        self.nnext = ext(None if first else self.nnext, -1)
        self.nrnext = ext(None if first else self.nrnext, -1)
        free = np.zeros(0, dtype=np.int32) if first else self.nfree[: self._meta[nat.NFREE]]
        self.nfree = self._stack(n, old, free)
        self._meta[nat.NFREE] = n - old + free.shape[0]
        self._nodes = n

    def _room(self, n: int) -> None:
        """Make room for ``n`` more rows and nodes, the hash table staying under half full."""
        meta = self._meta
        if meta[nat.RFREE] < n:
            self._grow_rows(max(2 * self._rows, self._rows + n))
        if meta[nat.NFREE] < n:
            self._grow_nodes(max(2 * self._nodes, self._nodes + n))
        if 2 * (meta[nat.K_USED] + n) > self.kslot.shape[0]:
            live = self._rows - int(meta[nat.RFREE])
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
            grow = ecap - self._ecap
            self.head = np.concatenate((self.head, np.full(grow, -1, dtype=np.int32)))
            self.tail = np.concatenate((self.tail, np.full(grow, -1, dtype=np.int32)))
            self.sizes = np.concatenate((self.sizes, np.zeros(grow, dtype=np.int64)))
            self.caps = np.concatenate((self.caps, np.full(grow, self.default_capacity, dtype=np.int64)))
            mask = np.zeros((self._rows, ecap // 64), dtype=np.uint64)
            mask[:, : self.rmask.shape[1]] = self.rmask
            self.rmask = mask
            self._ecap = ecap
        if ep >= self._eps:
            self._eps = ep + 1

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
        if ep >= self._eps or not len(hashes):
            return
        nat.remove(ep, _keys(hashes), *self._state(), self._meta)

    def clear(self, ep: int) -> None:
        """Forget everything about one endpoint (it restarted or left)."""
        if ep >= self._eps:
            return
        saved = int(self.caps[ep])
        self.caps[ep] = 0
        nat.trim(ep, *self._state(), self.caps, self._meta)
        self.caps[ep] = saved

    @property
    def hit_ratio(self) -> float:
        return self.hit_blocks / self.query_blocks if self.query_blocks else 0.0
