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
