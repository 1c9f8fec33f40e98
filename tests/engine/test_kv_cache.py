from hypothesis import given, settings
from hypothesis import strategies as st

from rastos.engine.hashing import BlockHasher, wire_hash
from rastos.engine.kv_cache import BlockRemoved, BlockStored, KVCacheManager
from rastos.engine.request import EngineRequest

BS = 4


def make_req(rid: str, tokens: list[int], hasher: BlockHasher) -> EngineRequest:
    r = EngineRequest(rid, tokens, 8)
    r.block_hashes = hasher.hash_blocks(tokens, 0, None)
    return r


def admit(kv: KVCacheManager, req: EngineRequest) -> int:
    hits = kv.get_computed_blocks(req)
    n_hit = len(hits) * BS
    assert kv.allocate_slots(req, req.num_tokens - n_hit, hits)
    req.num_computed_tokens = req.num_tokens
    return n_hit


def test_usage_counts_only_referenced_blocks_and_prefix_stays_cached():
    h = BlockHasher("sha256", BS)
    kv = KVCacheManager(11, BS)  # 10 usable blocks
    a = make_req("a", list(range(10)), h)  # 2 full blocks + 1 partial
    assert admit(kv, a) == 0
    assert kv.num_used_blocks == 3
    assert abs(kv.usage - 0.3) < 1e-9
    kv.free_request(a)
    assert kv.usage == 0.0
    # the same prompt again: its two full blocks hit although no request holds them
    b = make_req("b", list(range(10)), h)
    assert admit(kv, b) == 8


def test_full_prompt_hit_leaves_the_last_block_to_compute():
    h = BlockHasher("sha256", BS)
    kv = KVCacheManager(11, BS)
    a = make_req("a", list(range(8)), h)
    admit(kv, a)
    kv.free_request(a)
    b = make_req("b", list(range(8)), h)
    assert admit(kv, b) == 4  # 8 tokens = 2 blocks, only 1 may hit


def test_eviction_takes_the_tail_blocks_of_a_freed_request_first():
    h = BlockHasher("sha256", BS)
    kv = KVCacheManager(5, BS, record_events=True)  # 4 usable blocks
    a = make_req("a", list(range(8)), h)  # 2 blocks
    admit(kv, a)
    stored = [e for e in kv.take_events() if isinstance(e, BlockStored)]
    assert [len(e.block_hashes) for e in stored] == [2]
    kv.free_request(a)
    filler = make_req("c", list(range(100, 112)), h)  # 3 blocks: 2 free + 1 evicted
    admit(kv, filler)
    removed = [e for e in kv.take_events() if isinstance(e, BlockRemoved)]
    assert [e.block_hashes for e in removed] == [[wire_hash(a.block_hashes[1])]]  # the tail block went first
    assert wire_hash(a.block_hashes[0]) in kv.cached_hashes()
    assert wire_hash(a.block_hashes[1]) not in kv.cached_hashes()


def test_allocation_fails_cleanly_when_the_pool_is_short():
    h = BlockHasher("sha256", BS)
    kv = KVCacheManager(4, BS)  # 3 usable
    a = make_req("a", list(range(12)), h)
    admit(kv, a)
    b = make_req("b", list(range(50, 54)), h)
    assert not kv.allocate_slots(b, 4)
    assert b.blocks == [] and kv.num_free_blocks == 0


def test_reset_refused_while_blocks_are_in_use():
    h = BlockHasher("sha256", BS)
    kv = KVCacheManager(8, BS, record_events=True)
    a = make_req("a", list(range(8)), h)
    admit(kv, a)
    assert not kv.reset_prefix_cache()
    kv.free_request(a)
    kv.take_events()
    assert kv.reset_prefix_cache()
    assert kv.cached_hashes() == set()
    assert type(kv.take_events()[0]).__name__ == "AllBlocksCleared"


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 3), st.integers(1, 30), st.booleans()),
        min_size=1,
        max_size=40,
    )
)
def test_block_accounting_invariants(ops):
    """Random admit/free sequences keep ref counts, free queue and cache map consistent."""
    h = BlockHasher("builtin", BS)
    kv = KVCacheManager(16, BS, record_events=True)
    live: list[EngineRequest] = []
    cached_by_events: set = set()
    for i, (prefix, n, free_one) in enumerate(ops):
        tokens = [prefix] * min(n, 8) + list(range(1000 + i * 50, 1000 + i * 50 + max(0, n - 8)))
        r = make_req(f"r{i}", tokens, h)
        hits = kv.get_computed_blocks(r)
        if kv.allocate_slots(r, r.num_tokens - len(hits) * BS, hits):
            r.num_computed_tokens = r.num_tokens
            live.append(r)
        if free_one and live:
            kv.free_request(live.pop(0))
        for e in kv.take_events():
            if isinstance(e, BlockStored):
                cached_by_events.update(map(wire_hash, e.block_hashes))
            elif isinstance(e, BlockRemoved):
                cached_by_events.difference_update(e.block_hashes)
        refs = [0] * 16
        for lr in live:
            for b in lr.blocks:
                refs[b] += 1
        assert refs[1:] == kv.ref_cnt[1:]
        assert set(kv.free_blocks()) == {b for b in range(1, 16) if refs[b] == 0}
        assert cached_by_events == kv.cached_hashes()
        for hsh, b in kv.cached.items():
            assert kv.block_hash[b] == hsh


class FreeListModel:
    """vLLM's free block queue as an OrderedDict, with the reference counts that drive it."""

    def __init__(self, num_gpu_blocks: int) -> None:
        from collections import OrderedDict

        self.queue: OrderedDict[int, None] = OrderedDict.fromkeys(range(1, num_gpu_blocks))
        self.refs = [0] * num_gpu_blocks

    def admit(self, hits: list[int], n_fresh: int) -> list[int]:
        """A request takes its prefix hits (revived off the queue) and ``n_fresh`` new blocks
        from the front; returns the new ones in hand-out order."""
        for b in hits:
            if self.refs[b] == 0:
                del self.queue[b]
        fresh = [self.queue.popitem(last=False)[0] for _ in range(n_fresh)]
        for b in (*hits, *fresh):
            self.refs[b] += 1
        return fresh

    def release(self, blocks: list[int], block_hash: list) -> None:
        """Tail first to the back; a block without a hash to the front."""
        for b in reversed(blocks):
            self.refs[b] -= 1
            if self.refs[b] == 0:
                self.queue[b] = None
                if block_hash[b] is None:
                    self.queue.move_to_end(b, last=False)


@settings(max_examples=80, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 3), st.integers(1, 30), st.integers(0, 2), st.booleans()),
        min_size=1,
        max_size=60,
    )
)
def test_free_queue_order_matches_vllms_linked_list(ops):
    """The free queue hands out and evicts blocks in exactly the order vLLM's doubly linked
    list does (modelled here with an OrderedDict): revived blocks leave the queue, a freed
    request's blocks go to the back tail first, unhashed ones to the front. Long runs reuse
    the small pool many times over (and rebuild the compiled hash index)."""
    h = BlockHasher("builtin", BS)
    kv = KVCacheManager(12, BS)
    model = FreeListModel(12)
    live: list[EngineRequest] = []
    for i, (prefix, n, free_k, reset) in enumerate(ops * 3):
        tokens = [prefix] * min(n, 8) + list(range(1000 + i * 50, 1000 + i * 50 + max(0, n - 8)))
        r = make_req(f"r{i}", tokens, h)
        hits = kv.get_computed_blocks(r)
        if kv.allocate_slots(r, r.num_tokens - len(hits) * BS, hits):
            r.num_computed_tokens = r.num_tokens
            fresh = r.blocks[len(hits) :]  # fresh blocks come off the model's front, in order
            assert model.admit(hits, len(fresh)) == fresh
            live.append(r)
        for _ in range(min(free_k, len(live))):
            gone = live.pop(0)
            blocks = list(gone.blocks)
            kv.free_request(gone)
            model.release(blocks, kv.block_hash)
        if reset and not live:
            assert kv.reset_prefix_cache()
        assert kv.free_blocks() == list(model.queue)
        assert kv.num_free_blocks == len(model.queue)
        assert all(kv.block_hash[b] == hsh for hsh, b in kv.cached.items())
        assert sum(x is not None for x in kv.block_hash) == len(kv.cached)


def test_blocks_computed_twice_concurrently_stay_registered_once():
    """Two requests that compute the same blocks without a cache hit (both scheduled before
    either registered them): the first keeps the hashes, the second's copies stay unhashed and
    go back to the front of the free queue, reused first."""
    h = BlockHasher("builtin", BS)
    for record in (False, True):  # with and without KV events recorded
        kv = KVCacheManager(20, BS, record_events=record)
        a = make_req("a", list(range(16)), h)
        b = make_req("b", list(range(16)), h)
        assert kv.allocate_slots(a, 16) and kv.allocate_slots(b, 16)
        assert {kv.cached[wire_hash(x)] for x in a.block_hashes} == set(a.blocks)
        assert all(kv.block_hash[blk] is None for blk in b.blocks)
        b_blocks = list(b.blocks)
        kv.free_request(b)
        assert kv.free_blocks()[:4] == b_blocks
        kv.free_request(a)
        assert kv.free_blocks()[:4] == b_blocks and len(kv.cached) == 4


def test_blocks_revived_over_and_over_keep_vllms_order():
    """A prefix hit over and over revives the same blocks (unlinked from the free queue each
    time, appended again on release): the queue keeps vLLM's order through it."""
    h = BlockHasher("builtin", BS)
    kv = KVCacheManager(8, BS)
    model = FreeListModel(8)
    for i in range(60):
        r = make_req(f"r{i}", [7] * 8 + [100 + i], h)  # 2 shared full blocks + 1 token
        hits = kv.get_computed_blocks(r)
        assert kv.allocate_slots(r, r.num_tokens - len(hits) * BS, hits)
        assert model.admit(hits, len(r.blocks) - len(hits)) == r.blocks[len(hits) :]
        blocks = list(r.blocks)
        kv.free_request(r)
        model.release(blocks, kv.block_hash)
        assert kv.free_blocks() == list(model.queue)
    assert i >= 2 and len(hits) == 2
