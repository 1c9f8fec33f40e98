"""The engine model in virtual time: calibration, prefix caching, KV pressure, scheduling."""

import random

import pytest

from rastos.engine.core import EngineConfig, EngineCore
from rastos.engine.profile import load_profile
from rastos.engine.request import EngineRequest
from rastos.engine.virtual import VirtualRunner
from tests.conftest import tiny_profile


def tokens(n: int, seed: int) -> list[int]:
    rng = random.Random(seed)
    return [rng.randrange(256, 120000) for _ in range(n)]


def runner(profile=None, **cfg) -> VirtualRunner:
    return VirtualRunner(EngineCore(EngineConfig(profile or load_profile("llama3-8b-h100"), **cfg)))


def within(value: float, target: float, tol: float = 0.15) -> bool:
    return abs(value - target) <= tol * target


def test_decode_step_at_batch_8_matches_vllm_ci_8b():
    r = runner()
    for i in range(8):
        r.submit(EngineRequest(f"r{i}", tokens(32, i), 128))
    r.run()
    decode = [p for p in r.plans if p.num_prefill_tokens == 0]
    assert all(p.num_decode_reqs == 8 for p in decode)
    mean = sum(p.duration for p in decode) / len(decode)
    assert within(mean, 0.0078), mean
    # and end to end: 8 requests x 128 tokens, the CI latency test's shape (~1 s)
    assert within(r.now, 0.9975, 0.15), r.now


def test_fresh_8k_prefill_takes_about_240ms_on_8b():
    r = runner()
    req = r.submit(EngineRequest("p", tokens(8192, 1), 1))
    r.run()
    assert len(r.plans) == 1 and r.plans[0].num_prefill_tokens == 8192
    assert within(req.first_token_time - req.arrival_time, 0.240), req.first_token_time


def test_70b_tp4_decode_step_at_batch_8():
    r = runner(load_profile("llama3-70b-tp4-h100"))
    for i in range(8):
        r.submit(EngineRequest(f"r{i}", tokens(32, i), 64))
    r.run()
    decode = [p.duration for p in r.plans if p.num_prefill_tokens == 0]
    assert within(sum(decode) / len(decode), 0.0191), decode[0]


def test_repeated_long_prompt_hits_its_full_blocks_and_ttft_drops():
    r = runner()
    prompt = tokens(6000, 3)  # 375 blocks of 16 exactly: all but the last may hit
    a = r.submit(EngineRequest("a", prompt, 4))
    r.run()
    odd = prompt + tokens(5, 4)  # 6005 tokens: 375 full blocks, all may hit
    b = r.submit(EngineRequest("b", odd, 4))
    r.run()
    c = r.submit(EngineRequest("c", prompt, 4))
    r.run()
    assert a.num_cached_tokens == 0
    assert b.num_cached_tokens == 375 * 16
    assert c.num_cached_tokens == 374 * 16
    ttft_a = a.first_token_time - a.arrival_time
    ttft_b = b.first_token_time - b.arrival_time
    assert ttft_b < ttft_a / 5
    st = r.engine.stats
    assert st.prefix_cache_hits == 375 * 16 + 374 * 16
    assert st.prefix_cache_queries == 6000 + 6005 + 6000


def test_kv_usage_rises_with_concurrency_and_returns_to_zero():
    eng = EngineCore(EngineConfig(load_profile("llama3-8b-h100")))
    r = VirtualRunner(eng)
    usages = []
    for n in (1, 4, 16):
        for i in range(n):
            r.submit(EngineRequest(f"c{n}-{i}", tokens(2000, n * 100 + i), 50))
        r.run(max_steps=3)
        usages.append(eng.kv.usage)
        r.run()
    assert usages[0] < usages[1] < usages[2]
    assert eng.kv.usage == 0.0
    assert eng.num_running == 0


def test_preemption_when_the_kv_pool_runs_out():
    r = runner(tiny_profile(num_gpu_blocks=65, max_model_len=1024))  # 64 usable blocks = 1024 tokens
    reqs = [r.submit(EngineRequest(f"r{i}", tokens(200, i), 300)) for i in range(4)]
    r.run()
    st = r.engine.stats
    assert st.num_preemptions > 0
    assert all(q.finished and q.num_output_tokens == 300 for q in reqs)  # recomputed, not lost
    assert sum(q.num_preemptions for q in reqs) == st.num_preemptions
    assert r.engine.kv.usage == 0.0


def test_long_prefill_is_chunked_and_stalls_co_scheduled_decodes():
    r = runner()
    short = r.submit(EngineRequest("d", tokens(100, 1), 50))
    r.run(max_steps=3)
    long = r.submit(EngineRequest("long", tokens(16000, 2), 4))
    r.run()
    chunks = [p for p in r.plans if p.num_prefill_tokens > 1000]
    assert len(chunks) == 2
    assert chunks[0].num_tokens == 8192  # budget: max_num_batched_tokens
    assert all(short in p.reqs for p in chunks)  # decodes ride along...
    assert all(p.duration > 0.2 for p in chunks)  # ...in steps that are slow
    assert long.first_token_time >= chunks[1].end - 1e-9


def test_priority_policy_serves_lower_values_first_and_preempts_the_least_important():
    prof = tiny_profile(num_gpu_blocks=40, max_model_len=600, max_num_seqs=2)
    r = runner(prof, policy="priority")
    low = [r.submit(EngineRequest(f"low{i}", tokens(100, i), 200, priority=5), at=0.0) for i in range(2)]
    hi = r.submit(EngineRequest("hi", tokens(100, 9), 20, priority=0), at=0.0)
    r.run()
    assert hi in r.plans[0].reqs  # submitted last, served first
    assert max(q.first_scheduled_time for q in low) > 0  # one low waited for a seat
    r2 = runner(tiny_profile(num_gpu_blocks=30, max_model_len=400), policy="priority")
    a = r2.submit(EngineRequest("a", tokens(150, 1), 250, priority=1), at=0.0)
    b = r2.submit(EngineRequest("b", tokens(150, 2), 250, priority=9), at=0.0)
    r2.run()
    assert b.num_preemptions >= 1 and a.num_preemptions == 0


def test_fcfs_preempts_the_most_recent_request():
    r = runner(tiny_profile(num_gpu_blocks=30, max_model_len=400))
    a = r.submit(EngineRequest("a", tokens(150, 1), 250), at=0.0)
    b = r.submit(EngineRequest("b", tokens(150, 2), 250), at=0.001)
    r.run()
    assert b.num_preemptions >= 1 and a.num_preemptions == 0


def test_max_num_seqs_caps_the_batch():
    r = runner(tiny_profile(max_num_seqs=3))
    for i in range(6):
        r.submit(EngineRequest(f"r{i}", tokens(20, i), 10))
    r.run()
    assert max(len(p.reqs) for p in r.plans) == 3


def test_lora_adapters_obey_max_loras_and_cost_a_load():
    r = runner(max_loras=1)
    a = r.submit(EngineRequest("a", tokens(20, 1), 30, lora_name="ad-a"))
    b = r.submit(EngineRequest("b", tokens(20, 2), 30, lora_name="ad-b"))
    r.run()
    # b waited for a's adapter to leave the only slot
    assert b.first_scheduled_time >= a.finished_time
    first = r.plans[0]
    assert first.duration > 0.025  # includes the adapter load (25 ms in the profile)
    base = runner()
    base.submit(EngineRequest("x", tokens(20, 1), 30))
    base.run()
    assert base.plans[1].duration < r.plans[1].duration  # LoRA step overhead


def test_eos_and_max_tokens_finish_reasons():
    r = runner()
    a = r.submit(EngineRequest("a", tokens(10, 1), 50, eos_at=7))
    b = r.submit(EngineRequest("b", tokens(10, 2), 5))
    r.run()
    assert (a.finish_reason, a.num_output_tokens) == ("stop", 7)
    assert (b.finish_reason, b.num_output_tokens) == ("length", 5)
    assert r.engine.stats.request_success["stop"] == 1
    assert r.engine.stats.request_success["length"] == 1


def test_abort_frees_blocks_mid_flight():
    eng = EngineCore(EngineConfig(load_profile("llama3-8b-h100")))
    r = VirtualRunner(eng)
    a = r.submit(EngineRequest("a", tokens(500, 1), 100))
    r.run(max_steps=2)
    assert eng.kv.usage > 0
    plan = eng.schedule(r.now)
    eng.abort_request(a, r.now)
    out = eng.finish_step(plan, plan.end)
    assert out.new_token_reqs == [] and a.finish_reason == "abort"
    assert eng.kv.usage == 0.0 and not eng.has_work()


def test_multi_turn_conversation_hits_the_previous_answer():
    r = runner()
    turn1 = r.submit(EngineRequest("t1", tokens(300, 1), 100))
    r.run()
    follow = tokens(40, 2)
    turn2 = r.submit(EngineRequest("t2", turn1.prompt_token_ids + turn1.output_token_ids + follow, 10))
    r.run()
    # everything turn 1 computed (prompt + all answer tokens but the last) is reused
    assert turn2.num_cached_tokens == (300 + 100 - 1) // 16 * 16


def test_prompt_too_long_is_refused():
    eng = EngineCore(EngineConfig(tiny_profile()))
    with pytest.raises(ValueError, match="max_model_len"):
        eng.add_request(EngineRequest("x", tokens(5000, 1), 1))


def test_profile_whose_context_exceeds_the_pool_is_refused():
    with pytest.raises(ValueError, match="KV cache"):
        EngineCore(EngineConfig(tiny_profile(num_gpu_blocks=10, max_model_len=4096)))
