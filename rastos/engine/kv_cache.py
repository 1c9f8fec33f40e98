"""Paged KV cache with vLLM v1's prefix caching.

The pool holds ``num_gpu_blocks`` blocks; block 0 is vLLM's null block and never handed out,
so ``kv_cache_usage_perc = 1 - free/(num_gpu_blocks - 1)``. A block whose reference count
drops to zero goes back on the free queue but keeps its hash: it stays a prefix-cache hit
until it is reused for other data (then it is evicted, and a ``BlockRemoved`` event says so).

The free queue is vLLM's doubly linked list: the front is evicted first; a cache hit on a
free block unlinks it; a finished request's blocks are appended tail first, so its last
blocks are evicted before its shared prefix; blocks without a hash go to the front, reused
before anything cached. The per-block loops are compiled (:mod:`rastos.engine.kv_native`,
which says why); this class holds the arrays and speaks in requests.

A request's blocks live in an int32 buffer on it (``req.blk[:req.num_blocks]``; ``req.blocks``
is the list view), its hashes' 64-bit keys in ``req.hash_keys`` (:func:`request_keys`). Hashes
are stored as their wire value (what KV events carry, :func:`block_key`), so ``BlockRemoved``
and :meth:`KVCacheManager.cached_hashes` report wire values. Events are recorded only when
asked for, so the twin pays nothing for them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from rastos.engine import kv_native as nat
from rastos.engine.hashing import BlockHash, wire_hash
from rastos.engine.request import EngineRequest

__all__ = [
    "AllBlocksCleared",
    "BlockRemoved",
    "BlockStored",
    "KVCacheManager",
    "KVEvent",
    "block_key",
    "request_keys",
    "set_request_keys",
]

_TOP = 1 << 63


def block_key(h: BlockHash) -> int:
    """A block hash as the pool stores it: its wire value as a signed 64-bit int (0, the
    empty mark, taken as 1: a 2⁻⁶⁴ alias)."""
    w = wire_hash(h) or 1
    return w - (_TOP << 1) if w >= _TOP else w


def _wire(k: int) -> int:
    return k + (_TOP << 1) if k < 0 else k


@dataclass(slots=True)
class BlockStored:
    block_hashes: list[BlockHash]
    parent_block_hash: BlockHash | None
    token_ids: list[int]
    block_size: int
    lora_name: str | None = None


@dataclass(slots=True)
class BlockRemoved:
    block_hashes: list[int]  # wire values


@dataclass(slots=True)
class AllBlocksCleared:
    pass


KVEvent = BlockStored | BlockRemoved | AllBlocksCleared


def _keys_of(hashes: np.ndarray) -> np.ndarray:
    """:func:`block_key` of a uint64 array: an int64 view, copied only if a 0 must become 1."""
    keys = hashes.view(np.int64)
    if not keys.all():
        keys = keys.copy()
        keys[keys == 0] = 1
    return keys


def request_keys(req: EngineRequest, n: int) -> np.ndarray:
    """The first ``n`` block keys of ``req`` (int64), kept on the request and extended as its
    hash list grows (amortised: a decoding request adds one key at a time)."""
    have = req.num_hash_keys
    if have < n:
        hashes = req.block_hashes
        assert hashes is not None
        new = hashes[have:]
        if have == 0 and new and isinstance(new[0], int):
            arr = _keys_of(np.array(new, dtype=np.uint64))
        else:
            arr = req.hash_keys
            if arr is None or arr.shape[0] < len(hashes):
                grown = np.empty(max(16, 2 * len(hashes)), dtype=np.int64)
                if have:
                    grown[:have] = arr[:have]  # type: ignore[index]
                arr = grown
            arr[have : len(hashes)] = [block_key(h) for h in new]
        req.hash_keys = arr
        req.num_hash_keys = len(hashes)
    return req.hash_keys  # type: ignore[return-value]


def set_request_keys(req: EngineRequest, hashes: np.ndarray) -> None:
    """Give ``req`` its block hashes as a uint64 array, keys and all (no list of ints)."""
    keys = _keys_of(hashes)
    req.block_hashes = hashes  # type: ignore[assignment]
    req.hash_keys = keys
    req.num_hash_keys = keys.shape[0]


_warm = False


def _warm_up() -> None:
    """Compile (or load from numba's cache) every kernel once, on a toy pool: a server is
    ready only when its first request will not wait for the compiler."""
    global _warm
    _warm = True
    kv = KVCacheManager(16, 2, record_events=True)
    for rid in ("a", "b"):
        r = EngineRequest(rid, [1, 2, 3, 4, 5], 2)
        r.block_hashes = [11, 12]
        hits = kv.get_computed_blocks(r)
        kv.allocate_slots(r, r.num_tokens - len(hits) * 2, hits)
        kv.append_blocks([r, r])
        kv.free_request(r)
    r = EngineRequest("c", [7, 8, 9], 2)
    r.block_hashes = [21]
    kv.allocate_slots(r, 3)  # one full block: the decode path
    kv.free_request(r)
    kv.free_blocks()


class KVCacheManager:
    """Block pool plus per-request allocation, lookup and freeing."""

    def __init__(
        self,
        num_gpu_blocks: int,
        block_size: int,
        *,
        enable_caching: bool = True,
        record_events: bool = False,
    ) -> None:
        if num_gpu_blocks < 2:
            raise ValueError("num_gpu_blocks must be at least 2 (block 0 is the null block)")
        n = num_gpu_blocks
        self.num_gpu_blocks = n
        self.block_size = block_size
        self.enable_caching = enable_caching
        s = nat.new_state(n)
        self._ref, self._key, self._nxt, self._prv = s["ref"], s["key"], s["nxt"], s["prv"]
        self._tab, self._meta = s["tab"], s["meta"]
        self._shift = 64 - (self._tab.shape[0].bit_length() - 1)
        self._hits = np.empty(n, dtype=np.int32)
        self._evicted = np.empty(n, dtype=np.int64)
        self._stored = np.empty(n, dtype=np.bool_)
        self._scratch = np.empty(n, dtype=np.int32)
        self._no_hits = np.empty(0, dtype=np.int32)
        self.record_events = record_events
        self.events: list[KVEvent] = []
        if not _warm:
            _warm_up()

    # ----------------------------------------------------------------- pool-level state
    @property
    def num_free_blocks(self) -> int:
        return int(self._meta[nat.FREE])

    @property
    def usage(self) -> float:
        """vLLM's ``kv_cache_usage_perc``: cached blocks with ref_cnt 0 count as free."""
        return 1.0 - int(self._meta[nat.FREE]) / (self.num_gpu_blocks - 1)

    @property
    def num_used_blocks(self) -> int:
        return self.num_gpu_blocks - 1 - int(self._meta[nat.FREE])

    # Inspection (tests, debugging); each is O(pool).
    @property
    def ref_cnt(self) -> list[int]:
        return self._ref.tolist()

    @property
    def block_hash(self) -> list[int | None]:
        """Each block's key (wire value), None for a block without a hash."""
        return [_wire(k) if k else None for k in self._key.tolist()]

    @property
    def cached(self) -> dict[int, int]:
        """Wire value → block of every prefix-cache hit the pool can give."""
        hb = np.flatnonzero(self._key)
        return {_wire(k): b for k, b in zip(self._key[hb].tolist(), hb.tolist())}

    def cached_hashes(self) -> set[int]:
        """Every hash currently hit-able, as wire values (for tests that check events)."""
        return set(self.cached)

    def free_blocks(self) -> list[int]:
        """The free queue in eviction order (front first)."""
        out = np.empty(self.num_gpu_blocks, dtype=np.int32)
        return out[: nat.queue_order(self._nxt, out)].tolist()

    def take_events(self) -> list[KVEvent]:
        ev, self.events = self.events, []
        return ev

    def reset_prefix_cache(self) -> bool:
        """Forget every cached hash; refused (False) while any block is in use, as in vLLM.
        The queue keeps its order, every block in it now unhashed."""
        if self.num_used_blocks:
            return False
        self._key.fill(0)
        self._tab.fill(0)
        self._meta[nat.USED] = 0
        if self.record_events:
            self.events.append(AllBlocksCleared())
        return True

    # ----------------------------------------------------------------- request-level
    def get_computed_blocks(self, req: EngineRequest) -> np.ndarray:
        """Longest run of cached blocks from the start of ``req``'s tokens.

        At least one token is always left to compute (its logits are needed), so a fully
        cached prompt hits all but its last block.
        """
        if not self.enable_caching or req.block_hashes is None:
            return self._no_hits
        m = min((req.num_tokens - 1) // self.block_size, len(req.block_hashes))
        if m <= 0:
            return self._no_hits
        out = self._hits
        n = nat.lookup_prefix(self._tab, self._key, request_keys(req, m), m, self._shift, out)
        return out[:n].copy()

    def allocate_slots(
        self, req: EngineRequest, num_new_tokens: int, new_computed: Sequence[int] | np.ndarray | None = None
    ) -> bool:
        """Give ``req`` room for ``num_new_tokens`` more tokens; False if the pool is short.

        ``new_computed`` are prefix-cache hits found by :meth:`get_computed_blocks` for a
        request leaving the waiting queue; they are revived (taken off the free queue) here.
        """
        bs = self.block_size
        n_hit = 0 if new_computed is None else len(new_computed)
        nblk = req.num_blocks
        total = req.num_computed_tokens + n_hit * bs + num_new_tokens
        need = -(-total // bs) - nblk - n_hit
        if need < 0:
            need = 0
        if need or n_hit:
            hits = self._no_hits if not n_hit else np.asarray(new_computed, dtype=np.int32)
            blk = req.blk
            if blk is None or blk.shape[0] < nblk + n_hit + need:
                blk = self._grow(req, nblk + n_hit + need)
            if not self._alloc(hits, n_hit, need, blk, nblk):
                return False
            req.num_blocks = nblk + n_hit + need
            if n_hit:
                req.num_cached_blocks = nblk + n_hit
        if self.enable_caching and req.block_hashes is not None:
            upto = min(total, req.num_tokens) // bs
            if upto > req.num_cached_blocks:
                self._cache_full_blocks(req, upto)
        return True

    def append_blocks(self, reqs: list[EngineRequest]) -> None:
        """One more block for each of ``reqs`` (decoding), handed out in that order: popped
        at once, as one pop per request would (nothing else touches the pool in between).
        The caller checked the pool has them; each is registered once full."""
        m = len(reqs)
        got = self._scratch
        ok = self._alloc(self._no_hits, 0, m, got, 0)
        assert ok, "append_blocks on an exhausted pool"
        for req, b in zip(reqs, got[:m].tolist()):
            nblk = req.num_blocks
            blk = req.blk
            if blk is None or blk.shape[0] <= nblk:
                blk = self._grow(req, nblk + 1)
            blk[nblk] = b
            req.num_blocks = nblk + 1

    def _alloc(self, hits: np.ndarray, n_hit: int, need: int, blk: np.ndarray, nblk: int) -> bool:
        """Revive ``hits`` and pop ``need`` blocks into ``blk[nblk:]``; False if short."""
        n_ev = nat.alloc(self._ref, self._key, self._nxt, self._prv, self._meta, hits, n_hit, need, blk, nblk,
                         self._evicted)  # fmt: skip
        if n_ev > 0 and self.record_events:
            self.events.extend(BlockRemoved([_wire(k)]) for k in self._evicted[:n_ev].tolist())
        return n_ev >= 0

    @staticmethod
    def _grow(req: EngineRequest, n: int) -> np.ndarray:
        old = req.blk
        blk = np.empty(max(n, 2 * old.shape[0] if old is not None else 0, 8), dtype=np.int32)
        if old is not None and req.num_blocks:
            blk[: req.num_blocks] = old[: req.num_blocks]
        req.blk = blk
        return blk

    def _cache_full_blocks(self, req: EngineRequest, upto: int) -> None:
        """Register blocks ``[req.num_cached_blocks, upto)`` of ``req`` under their hashes;
        one that another request computed concurrently (its hash is cached) stays unhashed."""
        start = req.num_cached_blocks
        hashes = req.block_hashes
        assert hashes is not None
        upto = min(upto, len(hashes), req.num_blocks)
        if upto <= start:
            return
        if upto - start == 1:  # decoding: one block, its key straight from the hash
            b = int(req.blk[start])  # type: ignore[index]
            k = int(req.hash_keys[start]) if req.num_hash_keys > start else block_key(hashes[start])  # type: ignore[index]
            ok = nat.cache_one(self._tab, self._key, self._meta, b, k, self._shift)
            req.num_cached_blocks = upto
            if ok and self.record_events:
                self._emit_stored(req, start, upto)
            return
        keys = request_keys(req, upto)
        stored = self._stored
        nat.cache_blocks(self._tab, self._key, self._meta, req.blk, keys, start, upto, self._shift, stored)
        req.num_cached_blocks = upto
        if self.record_events:
            run = -1
            for i in range(start, upto + 1):
                if i < upto and stored[i - start]:
                    if run < 0:
                        run = i
                elif run >= 0:
                    self._emit_stored(req, run, i)
                    run = -1

    def _emit_stored(self, req: EngineRequest, i: int, j: int) -> None:
        hashes = req.block_hashes
        assert hashes is not None
        bs = self.block_size
        self.events.append(
            BlockStored(
                block_hashes=hashes[i:j],
                parent_block_hash=hashes[i - 1] if i > 0 else None,
                token_ids=req.token_slice(i * bs, j * bs),
                block_size=bs,
                lora_name=req.lora_name,
            )
        )

    def free_request(self, req: EngineRequest) -> None:
        """Release ``req``'s blocks: tail first to the back, unhashed ones to the front."""
        if req.num_blocks:
            nat.free_blocks(self._ref, self._key, self._nxt, self._prv, self._meta, req.blk, req.num_blocks)
        req.num_blocks = 0
        req.num_cached_blocks = 0
