"""Arrival processes: Poisson, gamma (any burstiness), on-off, and rate ramps.

A rate is a constant or a piecewise-linear schedule ``[(t0, r0), (t1, r1), ...]`` (requests/s);
non-homogeneous arrivals come from thinning a homogeneous process at the peak rate, so every
process here supports ramps. Gamma inter-arrivals with coefficient of variation ``cv`` give
Poisson at ``cv = 1`` and bursts above it; on-off alternates exponential on and off periods,
arriving only while on (at a rate raised so the mean rate holds).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator, Sequence

import numpy as np

__all__ = ["RateSchedule", "arrival_times"]


class RateSchedule:
    """Requests per second as a function of time (piecewise linear, constant past the ends)."""

    def __init__(self, rate: float | Sequence[tuple[float, float]]) -> None:
        if isinstance(rate, (int, float)):
            if rate <= 0:
                raise ValueError("rate must be positive")
            self.points = [(0.0, float(rate))]
        else:
            pts = sorted((float(t), float(r)) for t, r in rate)
            if not pts or any(r < 0 for _, r in pts) or max(r for _, r in pts) <= 0:
                raise ValueError("a rate schedule needs points (t, rate) with rate ≥ 0 and one > 0")
            self.points = pts
        self._ts = [t for t, _ in self.points]
        self.peak = max(r for _, r in self.points)

    def __call__(self, t: float) -> float:
        i = bisect.bisect_right(self._ts, t)
        if i == 0:
            return self.points[0][1]
        if i == len(self.points):
            return self.points[-1][1]
        (t0, r0), (t1, r1) = self.points[i - 1], self.points[i]
        return r0 + (r1 - r0) * (t - t0) / (t1 - t0)

    def mean(self, duration: float) -> float:
        xs = np.linspace(0, duration, 1001)
        return float(np.mean([self(x) for x in xs]))


def arrival_times(
    rate: float | Sequence[tuple[float, float]],
    *,
    process: str = "poisson",
    cv: float = 2.0,
    on_fraction: float = 0.3,
    mean_on: float = 5.0,
    n: int | None = None,
    duration: float | None = None,
    seed: int = 0,
) -> Iterator[float]:
    """Arrival instants (seconds from 0) until ``n`` arrivals or ``duration`` seconds."""
    if n is None and duration is None:
        raise ValueError("give n or duration")
    sched = RateSchedule(rate)
    rng = np.random.default_rng(seed)
    peak = sched.peak
    t = 0.0
    count = 0
    on_until = -1.0
    off_until = -1.0
    if process == "onoff":
        if not 0 < on_fraction <= 1:
            raise ValueError("on_fraction must be in (0, 1]")
        peak = peak / on_fraction
        on_until = rng.exponential(mean_on)
    elif process == "gamma":
        if cv <= 0:
            raise ValueError("cv must be positive")
        shape = 1.0 / (cv * cv)
    elif process != "poisson":
        raise ValueError(f"unknown arrival process {process!r}; use poisson, gamma or onoff")
    while True:
        if process == "gamma":
            t += rng.gamma(shape, 1.0 / (shape * peak))
        else:
            t += rng.exponential(1.0 / peak)
        if process == "onoff":
            while t > on_until:  # skip off periods
                off_until = on_until + rng.exponential(mean_on * (1 - on_fraction) / on_fraction)
                t = max(t, off_until)
                on_until = off_until + rng.exponential(mean_on)
        if duration is not None and t > duration:
            return
        if rng.random() * peak > sched(t) / (on_fraction if process == "onoff" else 1.0):
            continue  # thinning for the ramp
        yield t
        count += 1
        if n is not None and count >= n:
            return
