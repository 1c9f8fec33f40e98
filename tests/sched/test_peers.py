"""Peer baselines: each published rule decides as described (SGLang, Dynamo, AIBrix, llm-d)."""

import numpy as np
import pytest

from rastos.sched.config import load_policy
from rastos.sched.prefix_index import PrefixIndex
from tests.sched.helpers import fleet, plugin, prefix_cycle, request

ALL = np.arange(4)


def pick(type_name, f, req, cycle, **params):
    return plugin(type_name, seed=0, **params).pick(req, f, ALL, np.zeros(4), cycle)[0]


def test_sglang_balances_when_load_is_imbalanced_past_both_thresholds():
    req = request(list(range(10)))
    warm = prefix_cycle([10, 0, 0, 0])
    # 100 vs 10 in flight: abs gap 90 > 64 and 100 > 1.5 x 10: least loaded, cache or not
    assert pick("sglang-cache-aware-picker", fleet(4, inflight_reqs=[100, 10, 20, 30]), req, warm) == 1
    # gap 50 < 64: balanced enough, the longest match wins
    assert pick("sglang-cache-aware-picker", fleet(4, inflight_reqs=[60, 10, 20, 30]), req, warm) == 0


def test_sglang_below_the_cache_threshold_goes_to_the_smallest_tree():
    req = request(list(range(10)))
    cyc = prefix_cycle([2, 0, 0, 0])  # match rate 0.2 ≤ 0.3
    idx = PrefixIndex()
    for ep, n in ((0, 50), (1, 5), (2, 30), (3, 40)):
        idx.insert(ep, list(range(ep * 1000, ep * 1000 + n)))
    cyc["index/approx-prefix-cache-producer"] = idx
    assert pick("sglang-cache-aware-picker", fleet(4), req, cyc) == 1
    assert pick("sglang-cache-aware-picker", fleet(4), req, cyc, cacheThreshold=0.1) == 0


def test_dynamo_cost_is_overlap_weighted_prefill_plus_active_blocks():
    req = request(list(range(4)), tokens=256)  # 4 router blocks of 64 tokens = 16 KV blocks
    f = fleet(4, inflight_prompt_tokens=[0, 0, 512, 0])
    cyc = prefix_cycle([4, 2, 4, 0])
    s = plugin("dynamo-kv-scorer").score(req, f, ALL, cyc, 0.0)
    # costs: ep0 0+16=16, ep1 8+16=24, ep2 0+48=48, ep3 16+16=32 → lowest cost scores 1
    np.testing.assert_allclose(s, [1.0, 24 / 32, 0.0, 16 / 32])
    heavy = plugin("dynamo-kv-scorer", overlapScoreWeight=4.0).score(req, f, ALL, cyc, 0.0)
    assert np.argmax(heavy) == 0 and heavy[2] > heavy[3]  # overlap now outweighs ep2's load


def test_aibrix_least_request_when_imbalanced_else_best_match_within_the_band():
    req = request(list(range(10)))
    cyc = prefix_cycle([10, 6, 0, 0])
    assert pick("aibrix-prefix-cache-picker", fleet(4, running=[20, 5, 3, 9]), req, cyc) == 2  # gap 17 > 8
    assert pick("aibrix-prefix-cache-picker", fleet(4, running=[4, 4, 3, 4]), req, cyc) == 0  # best match
    # the best match runs above mean + 1 σ: the next match inside the band
    assert pick("aibrix-prefix-cache-picker", fleet(4, running=[9, 4, 3, 4]), req, cyc) == 1
    assert pick("aibrix-prefix-cache-picker", fleet(4, running=[4, 4, 3, 4]), req, prefix_cycle([0] * 4)) == 2


@pytest.mark.parametrize(
    "name, rule",
    [
        ("peer-sglang-cache-aware", "sglang-cache-aware-picker"),
        ("peer-dynamo-kv", "dynamo-kv-scorer"),
        ("peer-aibrix-prefix-cache", "aibrix-prefix-cache-picker"),
        ("peer-llm-d", "prefix-cache-affinity-filter"),
        ("peer-gie-default", "prefix-cache-scorer"),
    ],
)
def test_peer_policies_load_and_are_labelled_as_peers(name, rule):
    from rastos.sched.config import policy_text

    text = policy_text(name)[0]
    assert text.lstrip().startswith("# Peer baseline") and rule in text
    sched = load_policy(name)
    f = fleet(4)
    f.set_cache_info(0, 16, 28125)
    res = sched.schedule(request(list(range(8))), f, 0.0)
    assert 0 <= res.endpoint < 4
