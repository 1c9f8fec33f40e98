"""Benchmark: engine-model speed in virtual time (no HTTP, no clock).

Keeps N sequences decoding (each finished one is replaced by a fresh 512-token prompt, so
prefill chunks mix in as in steady state) and reports engine steps per wall second and
simulated tokens per wall second. Ratios to one step of the simulated GPU tell how much faster
than real time the twin can run one engine.

    python bench/engine_speed.py --running 64 --steps 20000
"""

from __future__ import annotations

import argparse
import random
import time

from rich.console import Console
from rich.table import Table

from rastos.engine.core import EngineConfig, EngineCore
from rastos.engine.profile import load_profile
from rastos.engine.request import EngineRequest


def run(running: int, steps: int, hash_algo: str, seed: int = 0) -> dict[str, float]:
    rng = random.Random(seed)
    eng = EngineCore(EngineConfig(load_profile("llama3-8b-h100"), hash_algo=hash_algo))
    counter = 0

    def new_request(now: float) -> None:
        nonlocal counter
        counter += 1
        req = EngineRequest(f"r{counter}", [rng.randrange(256, 120000) for _ in range(512)],
                            rng.randint(100, 400), arrival_time=now)  # fmt: skip
        eng.add_request(req)

    for _ in range(running):
        new_request(0.0)
    now = 0.0
    tokens = 0
    t0 = time.perf_counter()
    for _ in range(steps):
        plan = eng.schedule(now)
        assert plan is not None
        out = eng.finish_step(plan, plan.end)
        now = plan.end
        tokens += plan.num_tokens
        for _ in out.finished:
            new_request(now)
    wall = time.perf_counter() - t0
    return {
        "steps_per_s": steps / wall,
        "sim_tokens_per_s": tokens / wall,
        "speedup_vs_real_time": now / wall,
        "mean_batch": tokens / steps,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--running", type=int, nargs="*", default=[8, 64, 256])
    ap.add_argument("--steps", type=int, default=20000)
    ap.add_argument("--hash-algo", default="sha256")
    args = ap.parse_args()
    t = Table(title=f"engine model speed in virtual time ({args.hash_algo} block hashes)")
    for col in ("running seqs", "steps/s", "simulated tokens/s", "faster than real time", "tokens/step"):
        t.add_column(col, justify="right")
    for n in args.running:
        r = run(n, args.steps, args.hash_algo)
        t.add_row(str(n), f"{r['steps_per_s']:,.0f}", f"{r['sim_tokens_per_s']:,.0f}",
                  f"{r['speedup_vs_real_time']:,.0f}x", f"{r['mean_batch']:.0f}")  # fmt: skip
        print(f"RESULT running={n} steps_per_s={r['steps_per_s']:.0f} speedup={r['speedup_vs_real_time']:.0f}x")
    Console().print(t)


if __name__ == "__main__":
    main()
