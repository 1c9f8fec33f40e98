"""Each plugin's scoring, filtering and picking on crafted fleet states."""

import numpy as np
import pytest

from rastos.sched.framework import CycleState, ProfileResult, SchedulingResult
from tests.sched.helpers import fleet, plugin, prefix_cycle, request

ALL = np.arange(4)


def score(type_name, f, req=None, cycle=None, now=0.0, cands=ALL, **params):
    return plugin(type_name, **params).score(req or request(), f, cands, cycle or CycleState(), now)


def test_queue_scorer_min_max_and_stale_metrics_score_zero():
    f = fleet(4, queue=[0, 5, 10, 10])
    assert score("queue-scorer", f).tolist() == [1.0, 0.5, 0.0, 0.0]
    assert score("queue-scorer", fleet(4, queue=[3, 3, 3, 3])).tolist() == [1, 1, 1, 1]
    f.scraped_at[0] = -10.0  # metrics 10 s old at now=0
    assert score("queue-scorer", f).tolist()[0] == 0.0


def test_running_requests_and_kv_utilization_scorers():
    f = fleet(4, running=[2, 4, 6, 2], kv_usage=[0.1, 0.5, 0.9, 1.2])
    assert score("running-requests-size-scorer", f).tolist() == [1.0, 0.5, 0.0, 1.0]
    np.testing.assert_allclose(score("kv-cache-utilization-scorer", f), [0.9, 0.5, 0.1, 0.0])
    f.scraped_at[1] = -5.0
    assert score("kv-cache-utilization-scorer", f, stalenessThresholdMs=1000)[1] == 0.0


def test_active_request_and_token_load_scorers_use_gateway_accounting():
    f = fleet(4, inflight_reqs=[0, 2, 4, 4], inflight_tokens=[0, 1000, 2000, 4000])
    assert score("active-request-scorer", f).tolist() == [1.0, 0.5, 0.0, 0.0]
    np.testing.assert_allclose(score("token-load-scorer", f, queueThresholdTokens=4000), [1, 0.75, 0.5, 0])


def test_prefix_cache_scorer_ratio_and_length_blend():
    f = fleet(4)
    req = request(list(range(10)))
    np.testing.assert_allclose(score("prefix-cache-scorer", f, req, prefix_cycle([10, 5, 0, 2])), [1, 0.5, 0, 0.2])
    blended = score("prefix-cache-scorer", f, req, prefix_cycle([10, 5, 0, 2]), matchLengthWeight=0.5,
                    matchLengthScaleTokens=640)  # fmt: skip
    np.testing.assert_allclose(blended, [1.0, 0.5 * 0.25 + 0.25, 0.0, 0.5 * 0.04 + 0.1])


def test_prefill_cost_scorer_trades_cache_hits_against_backlog():
    req = request(list(range(100)), tokens=6400)
    idle = fleet(4)
    s = score("prefill-cost-scorer", idle, req, prefix_cycle([100, 0, 0, 0]))
    assert s[0] == 1.0 and s[1] < 0.1  # warm and idle wins by far
    busy = fleet(4, inflight_tokens=[50_000, 0, 0, 0])
    s = score("prefill-cost-scorer", busy, req, prefix_cycle([100, 0, 0, 0]))
    assert s[0] < s[1]  # the warm endpoint's backlog outweighs what its cache saves


def test_saturation_aware_affinity_sticks_until_clearly_worse():
    req = request(list(range(10)), tokens=640)
    cyc = prefix_cycle([10, 9, 0, 0])
    f = fleet(4)
    assert score("saturation-aware-affinity-scorer", f, req, cyc).tolist() == [1, 1, 0, 0]
    f.inflight_tokens[:] = [100_000, 100_000, 0, 0]  # ~5 s of queued prefill on the warm ones
    assert score("saturation-aware-affinity-scorer", f, req, cyc, maxTTFTPenaltyMs=2000).tolist() == [0, 0, 0, 0]
    assert score("saturation-aware-affinity-scorer", f, req, prefix_cycle([0, 0, 0, 0])).tolist() == [0, 0, 0, 0]


def _result(ep: int, cycle=None) -> SchedulingResult:
    pr = ProfileResult("p", np.array([ep]), np.array([ep]), np.array([1.0]))
    return SchedulingResult("p", {"p": pr}, cycle or CycleState())


def test_session_affinity_scorer_remembers_and_expires():
    sa = plugin("session-affinity-scorer", ttlSeconds=10)
    f = fleet(4)
    req = request(session_id="s1")
    assert sa.score(req, f, ALL, CycleState(), 0.0).tolist() == [0, 0, 0, 0]
    sa.pre_request(req, _result(2), f, 0.0)
    assert sa.score(req, f, ALL, CycleState(), 5.0).tolist() == [0, 0, 1, 0]
    assert sa.score(req, f, ALL, CycleState(), 20.0).tolist() == [0, 0, 0, 0]
    assert sa.score(request(session_id="other"), f, ALL, CycleState(), 5.0).sum() == 0


def test_lora_affinity_scorer_levels():
    f = fleet(4, max_loras=[2, 1, 1, 2])
    f.lora_running[:] = [frozenset({"a"}), frozenset({"b"}), frozenset(), frozenset({"b", "c"})]
    f.lora_waiting[:] = [frozenset(), frozenset({"a"}), frozenset(), frozenset()]
    s = score("lora-affinity-scorer", f, request(lora="a"))
    assert s.tolist() == [1.0, 0.6, 0.8, 0.0]
    assert score("lora-affinity-scorer", f, request()).tolist() == [1, 1, 1, 1]


def test_no_hit_lru_scorer_spreads_cold_requests():
    nh = plugin("no-hit-lru-scorer")
    f = fleet(3)
    cands = np.arange(3)
    cold = prefix_cycle([0, 0, 0])
    req = request([1])
    first = nh.score(req, f, cands, cold, 0)
    assert first.tolist() == [1, 1, 1]
    nh.pre_request(req, _result(1, cold), f, 0)
    s = nh.score(req, f, cands, cold, 0)
    assert s[1] < s[0] and s[1] < s[2]
    assert nh.score(req, f, cands, prefix_cycle([1, 0, 0]), 0).tolist() == [0.5, 0.5, 0.5]


def test_label_and_role_filters():
    f = fleet(4)
    f.endpoints[1].labels = {"zone": "a"}
    f.endpoints[2].labels = {"zone": "a", "gpu": "h100"}
    f.endpoints[3].role = "prefill"
    lf = plugin("label-selector-filter", matchLabels={"zone": "a"})
    assert lf.filter(request(), f, ALL, CycleState(), 0).tolist() == [1, 2]
    none = plugin("label-selector-filter", matchLabels={"zone": "z"}, failOpen=True)
    assert none.filter(request(), f, ALL, CycleState(), 0).tolist() == [0, 1, 2, 3]
    rf = plugin("role-filter", roles=["both", "decode"])
    assert rf.filter(request(), f, ALL, CycleState(), 0).tolist() == [0, 1, 2]
    with pytest.raises(ValueError, match="unknown roles"):
        plugin("role-filter", roles=["nope"])


def test_prefix_affinity_filter_keeps_sticky_until_ttft_penalty():
    af = plugin("prefix-cache-affinity-filter", maxTTFTPenaltyMs=1000, peakPrefillThroughput=10_000)
    req = request(list(range(10)))
    cyc = prefix_cycle([10, 9, 2, 0])
    f = fleet(4)
    assert af.filter(req, f, ALL, cyc, 0).tolist() == [0, 1]
    f.inflight_tokens[:] = [30_000, 30_000, 0, 0]  # 3 s behind the best other endpoint
    assert af.filter(req, f, ALL, cyc, 0).tolist() == [0, 1, 2, 3]
    assert af.filter(req, fleet(4), ALL, prefix_cycle([1, 0, 0, 0]), 0).tolist() == [0, 1, 2, 3]


def test_header_endpoint_filter():
    hf = plugin("header-endpoint-filter")
    f = fleet(4)
    req = request(headers={"x-rastos-endpoint-hint": "10.0.0.2:8000, 10.0.0.3:8000"})
    assert hf.filter(req, f, ALL, CycleState(), 0).tolist() == [2, 3]
    assert hf.filter(request(), f, ALL, CycleState(), 0).tolist() == [0, 1, 2, 3]


def test_max_score_picker_breaks_ties_at_random():
    mp = plugin("max-score-picker", seed=1)
    f = fleet(4)
    firsts = {int(mp.pick(request(), f, ALL, np.array([1.0, 1.0, 0.5, 1.0]), CycleState())[0]) for _ in range(60)}
    assert firsts == {0, 1, 3}
    ranked = mp.pick(request(), f, ALL, np.array([0.2, 0.9, 0.5, 0.1]), CycleState())
    assert ranked.tolist() == [1, 2, 0, 3]


def test_weighted_random_picker_follows_weights():
    wp = plugin("weighted-random-picker", seed=3)
    f = fleet(4)
    counts = np.zeros(4)
    for _ in range(4000):
        counts[wp.pick(request(), f, ALL, np.array([0.0, 1.0, 2.0, 1.0]), CycleState())[0]] += 1
    assert counts[0] == 0
    assert 0.4 < counts[2] / 4000 < 0.6 and 0.18 < counts[1] / 4000 < 0.32


def test_baseline_pickers():
    f = fleet(4, inflight_reqs=[3, 0, 2, 1])
    rr = plugin("round-robin-picker")
    assert [int(rr.pick(request(), f, ALL, np.zeros(4), CycleState())[0]) for _ in range(5)] == [0, 1, 2, 3, 0]
    lr = plugin("least-request-picker", seed=0)
    assert lr.pick(request(), f, ALL, np.zeros(4), CycleState()).tolist() == [1, 3, 2, 0]
    p2c = plugin("power-of-two-picker", seed=0)
    for _ in range(50):
        r = p2c.pick(request(), f, ALL, np.zeros(4), CycleState())
        assert sorted(r.tolist()) == [0, 1, 2, 3]
        assert f.inflight_reqs[r[0]] <= f.inflight_reqs[r[1]]
    rp = plugin("random-picker", seed=0)
    assert {int(rp.pick(request(), f, ALL, np.zeros(4), CycleState())[0]) for _ in range(50)} == {0, 1, 2, 3}
