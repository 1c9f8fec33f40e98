"""``rastos demo``: one simulated vLLM engine under a short multi-turn chat load.

Until the gateway lands (issue 3) the main job is to show the engine model at work: it starts
``rastos sim-engine`` as a process at real time, plays a multi-tenant, shared-prefix,
multi-turn chat workload against it, and prints what a user of vLLM would look at: TTFT and
TPOT percentiles, output tokens/s, and the engine's own prefix-cache hit rate and preemptions.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from pathlib import Path

import orjson
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from rastos.launch import ProcessGroup, free_port, scrape_metrics, wait_ready
from rastos.loadgen.client import RequestResult
from rastos.loadgen.workloads import chat_sessions, run_sessions

__all__ = ["run_engine_demo"]


def _pct(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    if len(xs) == 1:
        return xs[0]
    return statistics.quantiles(xs, n=100, method="inclusive")[int(q) - 1]


def summarize(results: list[RequestResult], wall: float, metrics: dict[str, float]) -> dict[str, float]:
    ok = [r for r in results if r.ok]
    ttft = [r.ttft for r in ok]
    tpot = [r.tpot for r in ok if r.tpot == r.tpot]
    q = metrics.get("vllm:prefix_cache_queries_total", 0.0)
    h = metrics.get("vllm:prefix_cache_hits_total", 0.0)
    return {
        "ttft_p50_s": _pct(ttft, 50),
        "ttft_p90_s": _pct(ttft, 90),
        "ttft_p99_s": _pct(ttft, 99),
        "tpot_p50_s": _pct(tpot, 50),
        "tpot_p90_s": _pct(tpot, 90),
        "output_tokens_per_s": sum(r.completion_tokens for r in ok) / wall if wall > 0 else 0.0,
        "prefix_hit_rate": h / q if q else 0.0,
        "requests_ok": len(ok),
        "requests_failed": len(results) - len(ok),
        "preemptions": metrics.get("vllm:num_preemptions_total", 0.0),
    }


async def _run(sessions_per_tenant: int, json_path: Path | None) -> dict[str, float]:
    console = Console()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    group = ProcessGroup()
    with group.running():
        group.spawn(["sim-engine", "--port", str(port), "--model", "demo-model", "--seed", "1"])
        await wait_ready(url)
        sessions = chat_sessions(tenants=4, sessions_per_tenant=sessions_per_tenant, turns=3, arrival_span=6.0)
        total = sum(len(s.questions) for s in sessions)
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task("multi-turn chat on one sim engine", total=total)
            t0 = time.perf_counter()
            results = await run_sessions(url, "demo-model", sessions, think_time=0.3,
                                         on_result=lambda r: progress.advance(task))  # fmt: skip
            wall = time.perf_counter() - t0
        metrics = await scrape_metrics(url)
    s = summarize(results, wall, metrics)
    t = Table(title=f"one sim engine (llama3-8b-h100), {len(sessions)} chat sessions x 3 turns, {wall:.1f} s")
    t.add_column("figure")
    t.add_column("value", justify="right")
    t.add_row("requests ok / failed", f"{s['requests_ok']} / {s['requests_failed']}")
    t.add_row(
        "TTFT p50 / p90 / p99 (ms)",
        f"{s['ttft_p50_s'] * 1e3:.0f} / {s['ttft_p90_s'] * 1e3:.0f} / {s['ttft_p99_s'] * 1e3:.0f}",
    )
    t.add_row("TPOT p50 / p90 (ms)", f"{s['tpot_p50_s'] * 1e3:.1f} / {s['tpot_p90_s'] * 1e3:.1f}")
    t.add_row("output tokens/s", f"{s['output_tokens_per_s']:,.0f}")
    t.add_row("engine prefix-cache hit rate", f"{s['prefix_hit_rate']:.1%}")
    t.add_row("preemptions", f"{s['preemptions']:.0f}")
    console.print(t)
    if json_path is not None:
        json_path.write_bytes(orjson.dumps({"engine": s}, option=orjson.OPT_INDENT_2))
    return s


def run_engine_demo(sessions_per_tenant: int = 8, json_path: Path | None = None) -> dict[str, float]:
    return asyncio.run(_run(sessions_per_tenant, json_path))
