import pytest

from rastos.analysis import AnalysisError, RequestAnalyzer


def test_next_turn_shares_the_previous_turns_blocks():
    a = RequestAnalyzer(16)
    msgs = [{"role": "system", "content": "x" * 2000}, {"role": "user", "content": "first question"}]
    r1 = a.analyze("chat", {"model": "m", "messages": msgs}, {}, "1", 0)
    msgs2 = [*msgs, {"role": "assistant", "content": "an answer " * 50}, {"role": "user", "content": "more"}]
    r2 = a.analyze("chat", {"model": "m", "messages": msgs2}, {}, "2", 0)
    assert len(r1.block_hashes) > 10
    assert r2.block_hashes[: len(r1.block_hashes)] == r1.block_hashes
    other = a.analyze("chat", {"model": "m", "messages": [{"role": "system", "content": "y" + "x" * 1999}]}, {}, "3", 0)
    assert other.block_hashes[0] != r1.block_hashes[0]
    assert 500 <= r1.prompt_tokens <= 520  # ~4 bytes per token


def test_completion_prompts_strings_and_token_ids():
    a = RequestAnalyzer(4)
    r = a.analyze("completion", {"model": "m", "prompt": "abcd" * 8}, {}, "r", 0)
    assert len(r.block_hashes) == 2  # 32 bytes in 16-byte blocks
    ids = a.analyze("completion", {"model": "m", "prompt": list(range(40))}, {}, "r", 0)
    assert len(ids.block_hashes) == 10 and ids.prompt_tokens == 40


def test_headers_set_tenant_session_priority_and_slos():
    a = RequestAnalyzer(64)
    h = {"x-session-id": "s9", "x-llm-d-inference-fairness-id": "acme", "x-rastos-priority": "-1",
         "x-slo-ttft-ms": "250", "x-llm-d-slo-tpot-ms": "40"}  # fmt: skip
    r = a.analyze("chat", {"model": "m", "messages": [{"role": "user", "content": "x"}], "max_tokens": 9,
                           "stream": True}, h, "r", 1.5)  # fmt: skip
    assert (r.session_id, r.tenant, r.priority, r.slo_ttft_ms, r.slo_tpot_ms) == ("s9", "acme", -1, 250.0, 40.0)
    assert r.max_tokens == 9 and r.stream and r.arrival == 1.5
    u = a.analyze("chat", {"model": "m", "messages": [{"role": "user", "content": "x"}], "user": "bob"}, {}, "r", 0)
    assert u.tenant == "bob"


@pytest.mark.parametrize(
    ("kind", "body", "param"),
    [
        ("chat", [], None),
        ("chat", {"messages": [{"role": "user", "content": "x"}]}, "model"),
        ("chat", {"model": "m"}, "messages"),
        ("chat", {"model": "m", "messages": [{"content": "no role"}]}, "messages"),
        ("completion", {"model": "m", "prompt": 5}, "prompt"),
        ("completion", {"model": "m", "prompt": "x", "max_tokens": "ten"}, "max_tokens"),
    ],
)
def test_invalid_bodies(kind, body, param):
    with pytest.raises(AnalysisError) as e:
        RequestAnalyzer(64).analyze(kind, body, {}, "r", 0)
    assert e.value.param == param
