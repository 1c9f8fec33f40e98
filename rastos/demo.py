"""``rastos demo``: four simulated engines behind the gateway, round-robin vs the default.

For each policy it starts four ``rastos sim-engine`` processes (cold caches, real time) and a
``rastos serve`` gateway, plays the same multi-tenant, shared-prefix, multi-turn chat
workload through it, reads the engines' own prefix-cache counters, and stops everything. The
engines' KV pools are sized so that the tenants' system prompts fit the fleet but not one
engine: the regime where routing decides whether caches hold or thrash. One table, a JSON
file (``--json``) and a PNG of the TTFT distributions beside it.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from rastos.launch import ProcessGroup, free_port, scrape_metrics, wait_ready
from rastos.loadgen.client import RequestResult
from rastos.loadgen.workloads import ChatSession, chat_sessions, run_sessions

__all__ = ["DemoSpec", "plot_ttft", "run_demo", "summarize"]

MODEL = "meta-llama/Llama-3.1-8B-Instruct"


@dataclass
class DemoSpec:
    policies: tuple[str, ...] = ("round-robin", "default")
    engines: int = 4
    tenants: int = 16
    sessions_per_tenant: int = 8
    turns: int = 3
    system_words: int = 6000
    question_words: int = 80
    max_tokens: int = 120
    arrival_span: float = 30.0
    think_time: float = 1.0
    num_gpu_blocks: int = 3072  # 49,152 KV tokens per engine: the 16 system prompts fit the fleet, not one engine
    seed: int = 7

    def sessions(self) -> list[ChatSession]:
        return chat_sessions(
            tenants=self.tenants, sessions_per_tenant=self.sessions_per_tenant, turns=self.turns,
            system_words=self.system_words, question_words=self.question_words, max_tokens=self.max_tokens,
            arrival_span=self.arrival_span, seed=self.seed,
        )  # fmt: skip


def _pct(xs: list[float], q: int) -> float:
    if not xs:
        return float("nan")
    if len(xs) == 1:
        return xs[0]
    return statistics.quantiles(xs, n=100, method="inclusive")[q - 1]


def summarize(results: list[RequestResult], wall: float, hits: float, queries: float) -> dict[str, Any]:
    ok = [r for r in results if r.ok]
    ttft = [r.ttft for r in ok]
    tpot = [r.tpot for r in ok if r.tpot == r.tpot]
    share = Counter(r.endpoint or "?" for r in ok)
    return {
        "ttft_p50_s": _pct(ttft, 50),
        "ttft_p90_s": _pct(ttft, 90),
        "ttft_p99_s": _pct(ttft, 99),
        "tpot_p50_s": _pct(tpot, 50),
        "tpot_p90_s": _pct(tpot, 90),
        "output_tokens_per_s": sum(r.completion_tokens for r in ok) / wall if wall > 0 else 0.0,
        "prefix_hit_rate": hits / queries if queries else 0.0,
        "requests_ok": len(ok),
        "requests_failed": len(results) - len(ok),
        "request_share": {k: v / max(1, len(ok)) for k, v in sorted(share.items())},
    }


async def _run_policy(
    spec: DemoSpec, policy: str, progress: Progress, task: Any
) -> tuple[list[RequestResult], dict[str, Any]]:
    group = ProcessGroup()
    with group.running():
        ports = [free_port() for _ in range(spec.engines)]
        max_len = min(32768, (spec.num_gpu_blocks - 1) * 16)
        procs = [
            group.spawn(["sim-engine", "--port", str(p), "--model", MODEL, "--seed", str(spec.seed + i),
                         "--num-gpu-blocks", str(spec.num_gpu_blocks), "--max-model-len", str(max_len)])
            for i, p in enumerate(ports)
        ]  # fmt: skip
        urls = [f"http://127.0.0.1:{p}" for p in ports]
        await asyncio.gather(*(wait_ready(u, proc=pr) for u, pr in zip(urls, procs, strict=True)))
        gport = free_port()
        gw = group.spawn(["serve", "--endpoints", ",".join(urls), "--policy", policy, "--port", str(gport),
                          "--debug-headers"])  # fmt: skip
        gurl = f"http://127.0.0.1:{gport}"
        await wait_ready(gurl, path="/ready", proc=gw)
        sessions = spec.sessions()
        t0 = time.perf_counter()
        results = await run_sessions(gurl, MODEL, sessions, think_time=spec.think_time,
                                     on_result=lambda r: progress.advance(task))  # fmt: skip
        wall = time.perf_counter() - t0
        samples = await asyncio.gather(*(scrape_metrics(u) for u in urls))
    hits = sum(s.get("vllm:prefix_cache_hits_total", 0.0) for s in samples)
    queries = sum(s.get("vllm:prefix_cache_queries_total", 0.0) for s in samples)
    return results, summarize(results, wall, hits, queries)


def plot_ttft(per_policy: dict[str, list[RequestResult]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    for name, results in per_policy.items():
        xs = sorted(r.ttft * 1e3 for r in results if r.ok)
        if xs:
            ax.plot(xs, [(i + 1) / len(xs) for i in range(len(xs))], label=name, linewidth=2)
    ax.set_xscale("log")
    from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("time to first token (ms, log scale)")
    ax.set_ylabel("fraction of requests")
    ax.set_title("TTFT distribution per routing policy (4 sim engines, multi-turn chat)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _table(summary: dict[str, dict[str, Any]]) -> Table:
    t = Table(title="rastos demo: 4 sim engines (llama3-8b-h100), multi-tenant shared-prefix multi-turn chat")
    for col in ("policy", "TTFT p50/p90/p99 ms", "TPOT p50/p90 ms", "out tok/s", "prefix hit", "ok/failed",
                "share per endpoint"):  # fmt: skip
        t.add_column(col, justify="right" if col != "policy" else "left")
    for name, s in summary.items():
        share = " ".join(f"{v:.0%}" for v in s["request_share"].values())
        t.add_row(
            name,
            f"{s['ttft_p50_s'] * 1e3:.0f} / {s['ttft_p90_s'] * 1e3:.0f} / {s['ttft_p99_s'] * 1e3:.0f}",
            f"{s['tpot_p50_s'] * 1e3:.1f} / {s['tpot_p90_s'] * 1e3:.1f}",
            f"{s['output_tokens_per_s']:,.0f}",
            f"{s['prefix_hit_rate']:.1%}",
            f"{s['requests_ok']}/{s['requests_failed']}",
            share,
        )
    return t


async def _main(spec: DemoSpec, json_path: Path | None, console: Console) -> dict[str, dict[str, Any]]:
    summary: dict[str, dict[str, Any]] = {}
    raw: dict[str, list[RequestResult]] = {}
    total = sum(len(s.questions) for s in spec.sessions())
    with Progress(console=console) as progress:
        for policy in spec.policies:
            task = progress.add_task(f"{policy:12s}", total=total)
            raw[policy], summary[policy] = await _run_policy(spec, policy, progress, task)
    console.print(_table(summary))
    base, best = summary.get("round-robin"), summary.get("default")
    if base and best and best["ttft_p90_s"] > 0:
        console.print(
            f"default vs round-robin: TTFT p90 {base['ttft_p90_s'] / best['ttft_p90_s']:.1f}x lower, "
            f"prefix hit rate {best['prefix_hit_rate'] / max(base['prefix_hit_rate'], 1e-9):.1f}x higher"
        )
    if json_path is not None:
        out = {"policies": summary}
        json_path.write_bytes(orjson.dumps(out, option=orjson.OPT_INDENT_2))
        png = json_path.with_suffix(".png")
        plot_ttft(raw, png)
        console.print(f"wrote {json_path} and {png}")
    return summary


def run_demo(spec: DemoSpec | None = None, json_path: Path | None = None) -> dict[str, dict[str, Any]]:
    return asyncio.run(_main(spec or DemoSpec(), json_path, Console(width=max(120, Console().width))))
