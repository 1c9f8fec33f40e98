"""Paged KV cache with vLLM v1's prefix caching.

The pool holds ``num_gpu_blocks`` blocks; block 0 is vLLM's null block and never handed out,
so ``kv_cache_usage_perc = 1 - free/(num_gpu_blocks - 1)``. A block whose reference count
drops to zero goes back on the free queue but keeps its hash: it stays a prefix-cache hit
until it is reused for other data (then it is evicted, and a ``BlockRemoved`` event says so).

The free queue has vLLM's order (the front is evicted first; a finished request's blocks are
appended tail first, so its last blocks are evicted before its shared prefix; blocks without a
hash go to the front, reused before anything cached) but not its doubly linked list: a cache
hit that revives a free block does not unlink it. The queue is a ``deque`` with lazy deletion:
an entry is live if its block is still free and it is that block's last entry (``_occ``
counts entries per block); stale ones are skipped when popped, and the deque is compacted when
it grows past twice the pool. Why: the twin frees and revives hundreds of blocks per request
on hundreds of engines, and an ``OrderedDict`` insert/delete per block (hash table plus linked
node, cache misses each) was its largest single cost; an append is one store.

Events are recorded as plain tuples-in-dataclasses only when asked for, so the twin pays
nothing for them.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from operator import countOf

from rastos.engine.hashing import BlockHash
from rastos.engine.request import EngineRequest

__all__ = ["AllBlocksCleared", "BlockRemoved", "BlockStored", "KVCacheManager", "KVEvent"]


@dataclass(slots=True)
class BlockStored:
    block_hashes: list[BlockHash]
    parent_block_hash: BlockHash | None
    token_ids: list[int]
    block_size: int
    lora_name: str | None = None


@dataclass(slots=True)
class BlockRemoved:
    block_hashes: list[BlockHash]


@dataclass(slots=True)
class AllBlocksCleared:
    pass


KVEvent = BlockStored | BlockRemoved | AllBlocksCleared


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
        self.num_gpu_blocks = num_gpu_blocks
        self.block_size = block_size
        self.enable_caching = enable_caching
        self.ref_cnt = [0] * num_gpu_blocks
        self.block_hash: list[BlockHash | None] = [None] * num_gpu_blocks
        # Free queue: unhashed free blocks (front, all live), then hashed ones (lazy; see above).
        self._front: deque[int] = deque()
        self._queue: deque[int] = deque(range(1, num_gpu_blocks))
        self._occ = [1] * num_gpu_blocks
        self._occ[0] = 0
        self._num_free = num_gpu_blocks - 1
        self.cached: dict[BlockHash, int] = {}
        self.record_events = record_events
        self.events: list[KVEvent] = []

    # ----------------------------------------------------------------- pool-level state
    @property
    def num_free_blocks(self) -> int:
        return self._num_free

    @property
    def usage(self) -> float:
        """vLLM's ``kv_cache_usage_perc``: cached blocks with ref_cnt 0 count as free."""
        return 1.0 - self._num_free / (self.num_gpu_blocks - 1)

    @property
    def num_used_blocks(self) -> int:
        return self.num_gpu_blocks - 1 - self._num_free

    def free_blocks(self) -> list[int]:
        """The free queue in eviction order (front first); O(pool), for tests and debugging."""
        return list(self._front) + self._live_queue()

    def _live_queue(self) -> list[int]:
        """The hashed part of the free queue without its stale entries, in order; O(pool)."""
        ref = self.ref_cnt
        seen: set[int] = set()
        live: list[int] = []
        for b in reversed(self._queue):  # a block's last entry is its live one
            if b not in seen:
                seen.add(b)
                if ref[b] == 0:
                    live.append(b)
        return live[::-1]

    def take_events(self) -> list[KVEvent]:
        ev, self.events = self.events, []
        return ev

    def reset_prefix_cache(self) -> bool:
        """Forget every cached hash; refused (False) while any block is in use, as in vLLM."""
        if self.num_used_blocks:
            return False
        # Every block is free: keep the queue's order, all of it now unhashed, at the front.
        self._front.extend(self._live_queue())
        self._queue.clear()
        self._occ = [0] * self.num_gpu_blocks
        for b, h in enumerate(self.block_hash):
            if h is not None:
                self.block_hash[b] = None
        self.cached.clear()
        if self.record_events:
            self.events.append(AllBlocksCleared())
        return True

    # ----------------------------------------------------------------- request-level
    def get_computed_blocks(self, req: EngineRequest) -> list[int]:
        """Longest run of cached blocks from the start of ``req``'s tokens.

        At least one token is always left to compute (its logits are needed), so a fully
        cached prompt hits all but its last block.
        """
        if not self.enable_caching or req.block_hashes is None:
            return []
        max_blocks = (req.num_tokens - 1) // self.block_size
        cached = self.cached
        hits: list[int] = []
        hashes = req.block_hashes
        for i in range(min(max_blocks, len(hashes))):
            b = cached.get(hashes[i])
            if b is None:
                break
            hits.append(b)
        return hits

    def allocate_slots(self, req: EngineRequest, num_new_tokens: int, new_computed: list[int] | None = None) -> bool:
        """Give ``req`` room for ``num_new_tokens`` more tokens; False if the pool is short.

        ``new_computed`` are prefix-cache hits found by :meth:`get_computed_blocks` for a
        request leaving the waiting queue; they are revived (taken off the free queue) here.
        """
        bs = self.block_size
        n_hit = len(new_computed) if new_computed else 0
        total = req.num_computed_tokens + n_hit * bs + num_new_tokens
        need = -(-total // bs) - len(req.blocks) - n_hit
        if need < 0:
            need = 0
        ref = self.ref_cnt
        revive = countOf(map(ref.__getitem__, new_computed), 0) if n_hit else 0  # type: ignore[arg-type]
        if need + revive > self._num_free:
            return False
        blocks = req.blocks
        if n_hit:
            for b in new_computed:  # type: ignore[union-attr]
                ref[b] += 1  # a revived block's queue entry goes stale: skipped when popped
            blocks.extend(new_computed)  # type: ignore[arg-type]
            self._num_free -= revive
            req.num_cached_blocks = len(blocks)
        if need:
            self._allocate_into(blocks, need)
        if self.enable_caching and req.block_hashes is not None:
            upto = min(total, req.num_tokens) // bs
            if upto > req.num_cached_blocks:
                self._cache_full_blocks(req, upto)
        return True

    def _allocate_into(self, blocks: list[int], n: int) -> None:
        ref = self.ref_cnt
        bh = self.block_hash
        front = self._front
        queue = self._queue
        occ = self._occ
        self._num_free -= n
        for _ in range(n):
            if front:
                b = front.popleft()
            else:
                while True:
                    b = queue.popleft()
                    o = occ[b] - 1
                    occ[b] = o
                    if o == 0 and ref[b] == 0:
                        break
            h = bh[b]
            if h is not None:  # evict the cached content this block held
                bh[b] = None
                if self.cached.get(h) == b:
                    del self.cached[h]
                if self.record_events:
                    self.events.append(BlockRemoved([h]))
            ref[b] = 1
            blocks.append(b)

    def _cache_full_blocks(self, req: EngineRequest, upto: int) -> None:
        """Register blocks ``[req.num_cached_blocks, upto)`` of ``req`` under their hashes."""
        start = req.num_cached_blocks
        hashes = req.block_hashes
        assert hashes is not None
        upto = min(upto, len(hashes))
        blocks = req.blocks
        cached = self.cached
        bh = self.block_hash
        run_start = -1
        for i in range(start, upto):
            h = hashes[i]
            b = blocks[i]
            if h in cached:  # another request computed the same block concurrently
                if run_start >= 0:
                    self._emit_stored(req, run_start, i)
                    run_start = -1
                continue
            cached[h] = b
            bh[b] = h
            if run_start < 0:
                run_start = i
        if run_start >= 0:
            self._emit_stored(req, run_start, upto)
        req.num_cached_blocks = max(upto, start)

    def _emit_stored(self, req: EngineRequest, i: int, j: int) -> None:
        if not self.record_events:
            return
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
        ref = self.ref_cnt
        bh = self.block_hash
        front = self._front
        queue = self._queue
        occ = self._occ
        freed = 0
        for b in reversed(req.blocks):
            r = ref[b] - 1
            ref[b] = r
            if r == 0:
                freed += 1
                if bh[b] is None:
                    front.appendleft(b)
                else:
                    queue.append(b)
                    occ[b] += 1
        self._num_free += freed
        req.blocks = []
        req.num_cached_blocks = 0
        if len(queue) > 2 * self.num_gpu_blocks:
            self._compact()

    def _compact(self) -> None:
        """Drop the queue's stale entries (amortised: runs after ≥ a pool's worth of frees)."""
        live = self._live_queue()
        self._queue = deque(live)
        occ = self._occ = [0] * self.num_gpu_blocks
        for b in live:
            occ[b] = 1

    def cached_hashes(self) -> set[BlockHash]:
        """Every hash currently hit-able (for tests that check events against contents)."""
        return set(self.cached)
