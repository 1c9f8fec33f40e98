from hypothesis import given, settings
from hypothesis import strategies as st

from rastos.engine.hashing import BlockHasher
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
    assert [e.block_hashes for e in removed] == [[a.block_hashes[1]]]  # the tail block went first
    assert a.block_hashes[0] in kv.cached_hashes()
    assert a.block_hashes[1] not in kv.cached_hashes()


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
                cached_by_events.update(e.block_hashes)
            elif isinstance(e, BlockRemoved):
                cached_by_events.difference_update(e.block_hashes)
        refs = [0] * 16
        for lr in live:
            for b in lr.blocks:
                refs[b] += 1
        assert refs[1:] == kv.ref_cnt[1:]
        assert set(kv.free) == {b for b in range(1, 16) if refs[b] == 0}
        assert cached_by_events == kv.cached_hashes()
        for hsh, b in kv.cached.items():
            assert kv.block_hash[b] == hsh
