"""Whole decisions: candidates, affinity, saturation, staleness, health, timings."""

import numpy as np
import pytest

from rastos.analysis import RequestAnalyzer
from rastos.sched.config import load_policy
from rastos.sched.scheduler import NoCandidates
from tests.sched.helpers import fleet, request, scheduler


def chat(system: str, user: str) -> dict:
    return {"model": "m", "messages": [{"role": "system", "content": system}, {"role": "user", "content": user}]}


def route(sched, f, body, now=0.0, rid="r", account=True):
    req = RequestAnalyzer(sched.block_tokens).analyze("chat", body, {}, rid, now)
    res = sched.schedule(req, f, now)
    sched.pre_request(req, res, f, now)
    if account:  # what the gateway's accounting would add while the request is in flight
        f.inflight_reqs[res.endpoint] += 1
    return res


def test_default_policy_keeps_tenants_on_warm_endpoints_and_spreads_tenants():
    s = load_policy("default")
    f = fleet(4)
    systems = [f"tenant {t} " + "lorem ipsum dolor sit amet " * 300 for t in range(4)]
    first = {t: route(s, f, chat(systems[t], "q0"), rid=f"{t}").endpoint for t in range(4)}
    assert len(set(first.values())) == 4  # cold tenants spread over idle endpoints
    for i in range(1, 6):
        for t in range(4):
            assert route(s, f, chat(systems[t], f"q{i}")).endpoint == first[t]


def test_default_policy_spills_a_hot_prefix_when_its_endpoint_is_saturated():
    s = load_policy("default")
    f = fleet(4)
    system = "shared " * 4000
    warm = route(s, f, chat(system, "a")).endpoint
    f.inflight_tokens[warm] = 2_000_000  # a huge prefill backlog on the warm endpoint
    assert route(s, f, chat(system, "b")).endpoint != warm


def test_round_robin_ignores_affinity():
    s = load_policy("round-robin")
    f = fleet(4)
    body = chat("same " * 1000, "q")
    assert [route(s, f, body).endpoint for _ in range(8)] == [0, 1, 2, 3, 0, 1, 2, 3]


def test_candidates_are_healthy_endpoints_serving_the_model():
    s = load_policy("least-request")
    f = fleet(4)
    f.endpoints[0].models = frozenset({"other"})
    f._changed()
    f.healthy[1] = False
    picks = {s.schedule(request(), f, 0).endpoint for _ in range(20)}
    assert picks <= {2, 3}
    f.healthy[:] = False
    with pytest.raises(NoCandidates):
        s.schedule(request(), f, 0)
    with pytest.raises(NoCandidates):
        s.schedule(request(model="unknown"), fleet(2), 0)


def test_filters_that_remove_everything_raise_no_candidates():
    s = scheduler([{"type": "label-selector-filter", "parameters": {"matchLabels": {"zone": "mars"}}}],
                  [{"pluginRef": "label-selector-filter"}])  # fmt: skip
    with pytest.raises(NoCandidates, match="label-selector-filter"):
        s.schedule(request(), fleet(3), 0)


def test_gie_default_avoids_endpoints_with_stale_metrics():
    s = load_policy("peer-gie-default")
    f = fleet(3, queue=[0, 0, 0], kv_usage=[0.1, 0.1, 0.1])
    f.scraped_at[:] = [0.0, -100.0, -100.0]
    assert {s.schedule(request(), f, 0.0).endpoint for _ in range(10)} == {0}


def test_subset_hint_restricts_candidates_and_timings_are_recorded():
    s = load_policy("default")
    f = fleet(4)
    res = s.schedule(request(), f, 0.0, candidates=np.array([2]))
    assert res.endpoint == 2 and res.ranked.tolist() == [2]
    assert s.timings.e2e.count == 1
    points = {k[0] for k in s.timings.by_plugin}
    assert {"producer", "scorer", "picker"} <= points
