"""A bucket histogram that records a batch of equal observations in one call.

prometheus_client's ``observe`` costs a lock and a bucket search per value; an engine step or
a scheduling cycle records many values at once, so components keep these plain counters and
export them at scrape time (``cumulative()`` gives Prometheus' ``le`` buckets).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence

__all__ = ["Histogram"]


class Histogram:
    """Cumulative-on-read bucket counts with an ``observe(value, n)`` for batches."""

    __slots__ = ("bounds", "count", "counts", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(float(b) for b in bounds)
        self.counts = [0] * (len(self.bounds) + 1)  # last slot is +Inf
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float, n: int = 1) -> None:
        self.counts[bisect_left(self.bounds, value)] += n
        self.sum += value * n
        self.count += n

    def observe_linear(self, a: float, b: float, k: int, n: int = 1) -> None:
        """Observe ``a + b·j`` for ``j = 0 .. k-1``, each ``n`` times, in O(buckets).

        (An engine's consecutive decode steps get longer by a constant each step.)"""
        if k <= 0:
            return
        if b <= 0:
            self.observe(a, n * k)
            return
        counts = self.counts
        bounds = self.bounds
        done = 0
        for i in range(bisect_left(bounds, a), len(bounds)):
            # values ≤ bound: j ≤ (bound − a)/b
            x = (bounds[i] - a) / b  # may be huge (tiny b): compare before converting
            upto = k if x >= k else int(x) + 1
            if upto > done:
                counts[i] += (upto - done) * n
                done = upto
            if done >= k:
                break
        if done < k:
            counts[-1] += (k - done) * n
        self.sum += n * (k * a + b * k * (k - 1) / 2)
        self.count += n * k

    def cumulative(self) -> list[tuple[str, int]]:
        """``(le, cumulative count)`` pairs, ending with ``+Inf``."""
        out = []
        acc = 0
        for b, c in zip(self.bounds, self.counts, strict=False):
            acc += c
            out.append((_fmt_le(b), acc))
        out.append(("+Inf", acc + self.counts[-1]))
        return out

    def quantile(self, q: float) -> float:
        """Upper bucket bound holding quantile ``q`` (coarse; for summaries, not for tests)."""
        if self.count == 0:
            return 0.0
        target = q * self.count
        acc = 0
        for b, c in zip(self.bounds, self.counts, strict=False):
            acc += c
            if acc >= target:
                return b
        return float("inf")


def _fmt_le(b: float) -> str:
    # prometheus_client formats bucket bounds with repr of float ("0.001", "1.0", "16384.0").
    return repr(float(b))
