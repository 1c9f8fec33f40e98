"""Step coalescing: a run's closed forms agree with stepping one step at a time."""

import copy
import random

import pytest

from rastos.engine.coalesce import kv_usage_during, plan_decode_run
from rastos.engine.core import EngineConfig, EngineCore
from rastos.engine.profile import load_profile
from rastos.engine.request import EngineRequest


@pytest.mark.parametrize("seed", range(4))
def test_kv_usage_during_a_run_equals_the_stepped_engines(seed):
    """What a scrape sees mid-run is what step-by-step stepping would show at that instant."""
    rng = random.Random(seed)
    prof = load_profile("llama3-8b-h100").with_overrides(num_gpu_blocks=2000, block_size=16, max_model_len=8192)
    core = EngineCore(EngineConfig(prof, hash_algo="xxh3_64"))
    for i in range(rng.randint(3, 40)):
        n = rng.randint(20, 900)
        r = EngineRequest(f"r{i}", [rng.randrange(256, 9999) for _ in range(n)], rng.randint(60, 300),
                          arrival_time=0.0)  # fmt: skip
        core.add_request(r)
    now = 0.0
    while core.waiting or any(r.num_computed_tokens < r.num_prompt_tokens for r in core.running):
        plan = core.schedule(now)
        now = plan.end
        core.finish_step(plan, now)
    run = plan_decode_run(core, now)
    assert run is not None and run.k_max > 20
    stepped = copy.deepcopy(core)
    t = now
    for j in range(1, min(run.k_max, 120) + 1):
        plan = stepped.schedule(t)
        assert plan.end == pytest.approx(run.end(j))
        mid = (t + plan.end) / 2  # a scrape inside step j: its blocks are allocated
        assert kv_usage_during(core, run, mid) == pytest.approx(stepped.kv.usage, abs=1e-12)
        stepped.finish_step(plan, plan.end)
        t = plan.end
