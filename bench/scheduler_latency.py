"""Benchmark: scheduling decision time at 8, 100 and 1,000 endpoints with 8k-token prompts.

Fills the default policy's prefix index as a running gateway would (every endpoint has seen
traffic; one tenant's prefix is warm on a few endpoints), then times `Scheduler.schedule`
(producers, filters, scorers, picker: what the gateway waits for) and, separately, request
analysis (hashing the 8k-token prompt) and the pre-request index update. Target: decision
p50 ≤ 100 µs at 100 endpoints.

    python bench/scheduler_latency.py
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

from rich.console import Console
from rich.table import Table

from rastos.analysis import RequestAnalyzer
from rastos.sched.config import load_policy
from rastos.sched.fleet import Endpoint, FleetState


def pct(xs: list[float], q: int) -> float:
    return statistics.quantiles(xs, n=100, method="inclusive")[q - 1]


def run(n_endpoints: int, policy: str, iters: int, prompt_tokens: int) -> dict[str, float]:
    rng = random.Random(n_endpoints)
    fleet = FleetState([Endpoint(f"http://10.0.{i // 250}.{i % 250}:8000", models=frozenset({"m"}))
                        for i in range(n_endpoints)])  # fmt: skip
    for i in range(n_endpoints):
        fleet.queue[i] = rng.randint(0, 5)
        fleet.running[i] = rng.randint(0, 64)
        fleet.kv_usage[i] = rng.random()
        fleet.scraped_at[i] = 0.0
        fleet.block_size[i] = 16
        fleet.num_gpu_blocks[i] = 28125
    sched = load_policy(policy)
    an = RequestAnalyzer(sched.block_tokens or 64)
    words = "the quick brown fox jumps over a lazy dog while routers route requests".split()
    tenants = [" ".join(rng.choice(words) for _ in range(prompt_tokens * 4 // 6)) for _ in range(32)]

    def body(t: int, q: int) -> dict:
        return {
            "model": "m",
            "messages": [{"role": "system", "content": tenants[t]}, {"role": "user", "content": f"q{q}"}],
        }

    # Warm the index: each tenant has been served on a few endpoints.
    for t in range(len(tenants)):
        req = an.analyze("chat", body(t, 0), {}, "w", 0.0)
        for _ in range(3):
            res = sched.schedule(req, fleet, 0.0)
            sched.pre_request(req, res, fleet, 0.0)
    analysis, decision, pre = [], [], []
    for i in range(iters):
        t0 = time.perf_counter()
        req = an.analyze("chat", body(i % len(tenants), i), {}, f"r{i}", 0.0)
        t1 = time.perf_counter()
        res = sched.schedule(req, fleet, 0.0)
        t2 = time.perf_counter()
        sched.pre_request(req, res, fleet, 0.0)
        t3 = time.perf_counter()
        analysis.append(t1 - t0)
        decision.append(t2 - t1)
        pre.append(t3 - t2)
    return {
        "blocks": len(req.block_hashes),
        "decision_p50_us": pct(decision, 50) * 1e6,
        "decision_p99_us": pct(decision, 99) * 1e6,
        "analysis_p50_us": pct(analysis, 50) * 1e6,
        "pre_request_p50_us": pct(pre, 50) * 1e6,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--endpoints", type=int, nargs="*", default=[8, 100, 1000])
    ap.add_argument("--policy", default="default")
    ap.add_argument("--iters", type=int, default=3000)
    ap.add_argument("--prompt-tokens", type=int, default=8192)
    args = ap.parse_args()
    t = Table(title=f"scheduling decision time, policy {args.policy!r}, {args.prompt_tokens}-token prompts")
    for col in ("endpoints", "prompt blocks", "decision p50 µs", "decision p99 µs", "analysis p50 µs",
                "index update p50 µs"):  # fmt: skip
        t.add_column(col, justify="right")
    for n in args.endpoints:
        r = run(n, args.policy, args.iters, args.prompt_tokens)
        t.add_row(str(n), str(r["blocks"]), f"{r['decision_p50_us']:.0f}", f"{r['decision_p99_us']:.0f}",
                  f"{r['analysis_p50_us']:.0f}", f"{r['pre_request_p50_us']:.0f}")  # fmt: skip
        print(
            f"RESULT endpoints={n} decision_p50_us={r['decision_p50_us']:.1f} decision_p99_us={r['decision_p99_us']:.1f}"
        )
    Console().print(t)


if __name__ == "__main__":
    main()
