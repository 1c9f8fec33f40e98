from hypothesis import given, settings
from hypothesis import strategies as st

from rastos.sched.prefix_index import PrefixIndex


def test_match_counts_leading_blocks_per_endpoint():
    idx = PrefixIndex(100)
    idx.insert(0, [1, 2, 3, 4])
    idx.insert(1, [1, 2, 9])
    idx.insert(2, [7, 8])
    assert idx.match([1, 2, 3, 4, 5]) == {0: 4, 1: 2}
    assert idx.match([1, 2, 9, 4]) == {0: 2, 1: 3}
    assert idx.match([7, 8]) == {2: 2}
    assert idx.match([1, 2, 3], candidates_mask=0b10) == {1: 2}


def test_lru_evicts_oldest_and_updates_reverse_map():
    idx = PrefixIndex(3)
    idx.insert(0, [1, 2, 3])
    idx.insert(0, [1])  # touch 1
    idx.insert(0, [4])  # evicts 2 (oldest)
    assert idx.size(0) == 3
    assert idx.match([1]) == {0: 1}
    assert idx.match([1, 2]) == {0: 1}
    idx.set_capacity(0, 1)
    assert idx.size(0) == 1 and idx.match([4]) == {0: 1}


def test_remove_and_clear():
    idx = PrefixIndex(10)
    idx.insert(0, [1, 2])
    idx.insert(1, [1, 2])
    idx.remove(0, [2])
    assert idx.match([1, 2]) == {0: 1, 1: 2}
    idx.clear(1)
    assert idx.match([1, 2]) == {0: 1}
    assert len(idx) == 1


@settings(max_examples=80, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 5), st.lists(st.integers(0, 6), min_size=1, max_size=6)), max_size=40),
    st.lists(st.integers(0, 6), min_size=1, max_size=6),
)
def test_matches_a_naive_model(inserts, query):
    cap = 5
    idx = PrefixIndex(cap)
    model: dict[int, list[int]] = {}
    for ep, hashes in inserts:
        idx.insert(ep, hashes)
        lru = model.setdefault(ep, [])
        for h in hashes:
            if h in lru:
                lru.remove(h)
            lru.append(h)
        del lru[:-cap]
    expect = {}
    for ep, lru in model.items():
        n = 0
        while n < len(query) and query[n] in lru:
            n += 1
        if n:
            expect[ep] = n
    assert idx.match(query) == expect


class _LRUModel:
    """The index's contract in plain Python: an LRU per endpoint."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.lru: dict[int, list[int]] = {}

    def insert(self, ep: int, hashes: list[int]) -> None:
        lru = self.lru.setdefault(ep, [])
        for h in hashes:
            if h in lru:
                lru.remove(h)
            lru.append(h)
        del lru[: max(0, len(lru) - self.cap)]

    def remove(self, ep: int, hashes: list[int]) -> None:
        lru = self.lru.get(ep, [])
        for h in hashes:
            if h in lru:
                lru.remove(h)

    def match(self, query: list[int]) -> dict[int, int]:
        out = {}
        for ep, lru in self.lru.items():
            n = 0
            while n < len(query) and query[n] in lru:
                n += 1
            if n:
                out[ep] = n
        return out


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["insert", "insert", "insert", "remove", "clear"]),
            st.integers(0, 130),  # beyond 64 endpoints: bitmasks of several words
            st.integers(0, 2**64 - 1),  # start of a run of hashes (any 64-bit value)
            st.integers(1, 60),
        ),
        min_size=1,
        max_size=120,
    )
)
def test_growth_removal_and_wide_masks_match_the_model(ops):
    """Many distinct hashes (the arrays grow several times), removals, clears and endpoints
    past 64: lookups and sizes agree with a plain LRU model throughout."""
    cap = 40
    idx = PrefixIndex(cap)
    model = _LRUModel(cap)
    for i, (op, ep, start, n) in enumerate(ops):
        hashes = [(start + 7 * j) % 2**64 for j in range(n)]
        if op == "insert":
            idx.insert(ep, hashes)
            model.insert(ep, hashes)
        elif op == "remove":
            idx.remove(ep, hashes[: n // 2 + 1])
            model.remove(ep, hashes[: n // 2 + 1])
        else:
            idx.clear(ep)
            model.lru.pop(ep, None)
        if i % 7 == 0 or i == len(ops) - 1:
            for q in (hashes, hashes[: n // 3 + 1]):
                assert idx.match(q) == model.match(q)
            assert idx.size(ep) == len(model.lru.get(ep, []))
    assert len(idx) == sum(len(v) for v in model.lru.values())


def test_arrays_grow_then_everything_is_freed_and_reused():
    """Fill well past the initial arrays (rows, nodes, table), free it all, fill again."""
    idx = PrefixIndex(300)
    model = _LRUModel(300)
    for rnd in range(3):
        for ep in range(12):
            hashes = [rnd * 10**6 + ep * 1000 + j for j in range(400)]  # 100 evicted per endpoint
            idx.insert(ep, hashes)
            model.insert(ep, hashes)
        for ep in range(0, 12, 3):
            q = [rnd * 10**6 + ep * 1000 + j for j in range(100, 400)]
            assert idx.match(q) == model.match(q)
        assert len(idx) == 12 * 300
        for ep in range(12):
            idx.clear(ep)
            model.lru.pop(ep, None)
        assert len(idx) == 0 and idx.match([rnd * 10**6 + 150]) == {}
