"""Synthetic workloads: shared-prefix groups, multi-turn history, tenants, priorities, sessions."""

from collections import Counter
from itertools import pairwise

import numpy as np
import pytest

from rastos.workload.model import output_tokens
from rastos.workload.synthetic import chat_sessions, shared_prefix


def test_shared_prefix_groups_share_their_system_prompt_and_nothing_else():
    reqs = list(shared_prefix(groups=4, prompts_per_group=3, system_prompt_len=100, question_len=20,
                              output_len=(5, 9), n=400, seed=1))  # fmt: skip
    assert len(reqs) == 400
    assert all(r.prompt_tokens == 120 and 5 <= r.max_tokens <= 9 for r in reqs)
    by_group: dict[str, set[bytes]] = {}
    for r in reqs:
        by_group.setdefault(r.tenant, set()).add(r.prompt[:100].tobytes())
    assert len(by_group) == 4 and all(len(v) == 1 for v in by_group.values())  # one system prompt each
    assert len({next(iter(v)) for v in by_group.values()}) == 4  # and they differ
    assert len({r.prompt.tobytes() for r in reqs}) == 12  # groups x prompts per group questions
    assert all(b.arrival >= a.arrival for a, b in pairwise(reqs))


def test_multi_turn_carries_the_previous_answer_and_restarts_before_max_context():
    reqs = list(shared_prefix(groups=1, prompts_per_group=1, system_prompt_len=50, question_len=10,
                              output_len=8, multi_turn=True, max_context=200, n=12, seed=2))  # fmt: skip
    first, second = reqs[0], reqs[1]
    assert second.session == first.session == "user-0"
    assert second.prompt_tokens == 50 + 10 + 8 + 10
    assert np.array_equal(second.prompt[: first.prompt_tokens], first.prompt)
    assert np.array_equal(second.prompt[60:68], output_tokens(first.id, 0, 8))  # the answer, token for token
    assert max(r.prompt_tokens + r.max_tokens for r in reqs) <= 200
    assert any(b.prompt_tokens < a.prompt_tokens for a, b in pairwise(reqs))  # restarted


def test_tenants_and_priorities_follow_their_parameters():
    reqs = list(shared_prefix(groups=8, prompts_per_group=2, system_prompt_len=10, question_len=5, n=4000,
                              tenants=2, priorities={0: 3, 5: 1}, seed=3))  # fmt: skip
    assert {r.tenant for r in reqs} == {"tenant-0", "tenant-1"}
    share = Counter(r.priority for r in reqs)
    assert share[5] / len(reqs) == pytest.approx(0.25, abs=0.03)


def test_chat_sessions_chain_follow_ups_to_their_parent():
    reqs = list(chat_sessions(sessions=20, turns=3, tenants=4, system_prompt_len=40, question_len=8,
                              output_len=6, think_time=2.0, seed=4))  # fmt: skip
    assert len(reqs) == 60
    by_id = {r.id: r for r in reqs}
    for r in reqs:
        if r.parent is None:
            assert r.think_time == 0.0
            continue
        p = by_id[r.parent]
        assert r.session == p.session and r.tenant == p.tenant and r.think_time > 0
        assert np.array_equal(r.prompt[: p.prompt_tokens], p.prompt)  # history grows
        assert np.array_equal(r.prompt[p.prompt_tokens : p.prompt_tokens + 6], output_tokens(p.id, 0, 6))


def test_chat_sessions_n_caps_the_request_count():
    reqs = list(chat_sessions(turns=4, n=10, system_prompt_len=8, question_len=4, seed=5))
    assert len(reqs) == 10


@pytest.mark.parametrize("kwargs", [{"groups": 0}, {"prompts_per_group": 0}])
def test_empty_shapes_are_refused(kwargs):
    with pytest.raises(ValueError):
        list(shared_prefix(n=1, **kwargs))
