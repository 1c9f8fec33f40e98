"""Benchmark: how fast the digital twin runs, on a real trace and at fleet scale.

Two scenarios, each one `rastos bench` run of the default policy (same code path, progress bar
included), timed from the first event to the last:

- ``mooncake``: the Mooncake synthetic trace (3,993 requests) on 8 engines. Target ≤ 20 s.
- ``million``: 1,000,000 requests of a synthetic workload on 100 engines at 80 % load.
  Target ≤ 10 min. The workload is ``shared-prefix`` by default (inference-perf's shape:
  7,200-token prompts in groups sharing a 6,000-token system prompt, 100-300 output tokens),
  the heaviest built-in one per request; ``--workload chat-sessions`` runs multi-turn chat.

It prints wall time, µs of wall time per request, simulated seconds, and how much faster than
real time the fleet was simulated. ``--requests`` scales the synthetic run down (for a quick
look); the per-request cost is what to compare.

    python bench/twin_scale.py                      # both scenarios
    python bench/twin_scale.py --scenario million --requests 100000
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from rastos.twin.bench import BenchSpec, run_bench

TRACE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mooncake_synthetic_trace.jsonl"


def _run(spec: BenchSpec, console: Console) -> dict:
    t0 = time.perf_counter()
    out = run_bench(spec, None, console)
    wall = time.perf_counter() - t0
    s = out["policies"]["default"]
    n = s["requests_ok"] + s["requests_failed"]
    return {
        "wall_s": wall,
        "sim_wall_s": s["wall_seconds"],
        "requests": n,
        "us_per_request": s["wall_seconds"] / n * 1e6,
        "simulated_s": s["simulated_seconds"],
        "ttft_p90_s": s["ttft_p90_s"],
        "hit": s["prefix_hit_rate"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenario", choices=["mooncake", "million", "all"], default="all")
    ap.add_argument("--trace", default=os.environ.get("RASTOS_MOONCAKE_TRACE", str(TRACE)))
    ap.add_argument("--requests", type=int, default=1_000_000, help="synthetic requests (million scenario)")
    ap.add_argument("--endpoints", type=int, default=100)
    ap.add_argument("--workload", default="shared-prefix")
    ap.add_argument("--ceiling", action="store_true", help="also compute the pooled-cache ceiling")
    args = ap.parse_args()
    console = Console(width=180)
    rows = []
    if args.scenario in ("mooncake", "all"):
        spec = BenchSpec(policies=["default"], endpoints=8, workload=None, trace=args.trace, slo_ttft_s=2.0)
        rows.append(("Mooncake trace, 8 engines", 20.0, _run(spec, console)))
    if args.scenario in ("million", "all"):
        spec = BenchSpec(policies=["default"], endpoints=args.endpoints, workload=args.workload,
                         limit=args.requests, pooled_ceiling=args.ceiling)  # fmt: skip
        rows.append((f"{args.requests:,} x {args.workload}, {args.endpoints} engines", 600.0, _run(spec, console)))
    t = Table(title="Digital twin speed (default policy, one process)")
    for col in ("scenario", "requests", "wall s", "µs / request", "simulated s", "x real time", "target s", "met"):
        t.add_column(col, justify="left" if col == "scenario" else "right")
    for name, target, r in rows:
        t.add_row(name, f"{r['requests']:,}", f"{r['sim_wall_s']:.1f}", f"{r['us_per_request']:,.0f}",
                  f"{r['simulated_s']:,.0f}", f"{r['simulated_s'] / r['sim_wall_s']:,.1f}", f"{target:.0f}",
                  "yes" if r["sim_wall_s"] <= target else "NO")  # fmt: skip
    console.print(t)


if __name__ == "__main__":
    main()
