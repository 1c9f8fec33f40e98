"""Arrival processes: rates, burstiness, on-off gaps, ramps, and parameter errors."""

from itertools import pairwise

import numpy as np
import pytest

from rastos.workload.arrivals import RateSchedule, arrival_times


def gaps(ts):
    return np.diff(np.asarray(ts))


def test_poisson_has_the_asked_rate_and_cv_one():
    ts = list(arrival_times(20.0, n=20000, seed=1))
    assert len(ts) == 20000 and all(b >= a for a, b in pairwise(ts))
    g = gaps(ts)
    assert 1 / g.mean() == pytest.approx(20.0, rel=0.03)
    assert g.std() / g.mean() == pytest.approx(1.0, rel=0.05)


@pytest.mark.parametrize("cv", [0.5, 3.0])
def test_gamma_keeps_the_rate_and_sets_the_burstiness(cv):
    g = gaps(list(arrival_times(10.0, process="gamma", cv=cv, n=30000, seed=2)))
    assert 1 / g.mean() == pytest.approx(10.0, rel=0.05)
    assert g.std() / g.mean() == pytest.approx(cv, rel=0.1)


def test_on_off_arrives_only_in_bursts_at_the_mean_rate():
    ts = list(arrival_times(5.0, process="onoff", on_fraction=0.25, mean_on=4.0, duration=4000, seed=3))
    assert len(ts) / 4000 == pytest.approx(5.0, rel=0.15)
    g = gaps(ts)
    assert g.max() > 20 * g.mean()  # long silent off periods
    assert g.std() / g.mean() > 1.5


def test_a_ramp_thins_to_the_scheduled_rate():
    ts = np.asarray(list(arrival_times([(0, 1.0), (100, 21.0)], duration=100, seed=4)))
    first, second = (ts < 50).sum(), (ts >= 50).sum()
    # mean rate 6 in the first half, 16 in the second
    assert first == pytest.approx(300, rel=0.15) and second == pytest.approx(800, rel=0.1)
    assert RateSchedule([(0, 1.0), (100, 21.0)])(25) == pytest.approx(6.0)


def test_duration_or_count_ends_the_stream():
    assert max(arrival_times(50.0, duration=2.0, seed=5)) <= 2.0
    assert len(list(arrival_times(50.0, n=7, seed=5))) == 7


@pytest.mark.parametrize(
    "kwargs, msg",
    [
        ({"rate": 0}, "positive"),
        ({"rate": [(0, -1.0)]}, "rate ≥ 0"),
        ({"rate": 1.0, "process": "weibull"}, "unknown arrival process"),
        ({"rate": 1.0, "process": "gamma", "cv": 0}, "cv must be positive"),
        ({"rate": 1.0, "process": "onoff", "on_fraction": 0}, "on_fraction"),
    ],
)
def test_bad_parameters_say_what_is_wrong(kwargs, msg):
    rate = kwargs.pop("rate")
    with pytest.raises(ValueError, match=msg):
        list(arrival_times(rate, n=3, **kwargs))


def test_neither_n_nor_duration_is_an_error():
    with pytest.raises(ValueError, match="n or duration"):
        list(arrival_times(1.0))
