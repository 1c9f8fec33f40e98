"""Batch histogram: observe_linear equals observing each value of the series."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rastos.common.histogram import Histogram

BOUNDS = [0.001, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.5]


@settings(max_examples=200, deadline=None)
@given(
    a=st.floats(1e-4, 0.3, allow_nan=False),
    b=st.one_of(st.just(0.0), st.floats(1e-7, 2e-3)),  # a decode step grows by t_kv x batch
    k=st.integers(0, 400),
    n=st.integers(1, 64),
)
def test_observe_linear_equals_one_by_one(a, b, k, n):
    bulk, each = Histogram(BOUNDS), Histogram(BOUNDS)
    bulk.observe_linear(a, b, k, n)
    for j in range(k):
        each.observe(a + b * j, n)
    assert bulk.count == each.count == n * k
    assert bulk.sum == pytest.approx(each.sum, rel=1e-9, abs=1e-12)
    # a value landing exactly on a bound may round either way: allow one value per bound
    diff = sum(abs(x - y) for x, y in zip(bulk.counts, each.counts, strict=True))
    assert diff <= 2 * n * len(BOUNDS) * (1 if b else 0)


def test_tiny_growth_does_not_overflow():
    h = Histogram(BOUNDS)
    h.observe_linear(0.25, 1e-300, 5)
    assert h.count == 5 and h.counts[BOUNDS.index(0.5)] == 5


def test_cumulative_buckets_end_with_inf():
    h = Histogram([1, 2])
    h.observe(0.5, 3)
    h.observe(5.0)
    assert h.cumulative() == [("1.0", 3), ("2.0", 3), ("+Inf", 4)]
