"""Benchmark: how many concurrent streams one sim-engine process holds at time-scale 1.

Starts ``rastos sim-engine`` pinned to one core, drives N concurrent streaming chat requests
(closed loop) from this process pinned to another core, and reports the engine's step lag
(scheduled vs actual step start, measured inside the engine), its CPU use, and what clients
saw. Target (issue 2): N >= 300 with step lag p99 <= 5 ms.

    python bench/engine_scale.py --concurrency 300 --duration 60
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import socket
import statistics
import subprocess
import sys
import time

import aiohttp
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from rastos.engine.textgen import word_list
from rastos.loadgen.client import RequestResult, send_request


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def wait_ready(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as s:
        while time.monotonic() < deadline:
            try:
                async with s.get(url + "/health") as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError("sim-engine did not become ready")


def prompt(rng: random.Random, n_words: int) -> str:
    words = word_list()
    return " ".join(words[rng.randrange(len(words))] for _ in range(n_words))


async def run(args: argparse.Namespace) -> int:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "rastos.cli", "sim-engine", "--port", str(port), "--model", "bench",
           "--time-scale", "1", "--seed", "1"]  # fmt: skip
    proc = subprocess.Popen(cmd, preexec_fn=lambda: os.sched_setaffinity(0, {0}))
    try:
        os.sched_setaffinity(0, {1 % os.cpu_count()})  # type: ignore[arg-type]
        await wait_ready(base)
        results: list[RequestResult] = []
        stop = asyncio.Event()
        rng = random.Random(7)
        conn = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=conn) as session:

            async def worker(i: int) -> None:
                while not stop.is_set():
                    body = {
                        "model": "bench",
                        "messages": [{"role": "user", "content": prompt(rng, args.prompt_words)}],
                        "max_tokens": rng.randint(args.output_tokens // 2, args.output_tokens * 3 // 2),
                        "ignore_eos": True,
                        "stream": True,
                        "stream_options": {"include_usage": True},
                    }
                    r = await send_request(session, base + "/v1/chat/completions", body)
                    if not stop.is_set():
                        results.append(r)

            tasks = [asyncio.create_task(worker(i)) for i in range(args.concurrency)]
            await asyncio.sleep(args.warmup)
            async with session.post(base + "/admin/stats/reset"):
                pass
            cpu0, t0 = cpu_seconds(proc.pid), time.monotonic()
            results.clear()
            with Progress(transient=True) as progress:
                task = progress.add_task(f"{args.concurrency} streams", total=args.duration)
                while (el := time.monotonic() - t0) < args.duration:
                    await asyncio.sleep(0.5)
                    progress.update(task, completed=el)
            async with session.get(base + "/admin/stats") as r:
                stats = await r.json()
            cpu = (cpu_seconds(proc.pid) - cpu0) / (time.monotonic() - t0)
            running_at_end = stats["running"]
            stop.set()
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        proc.terminate()
        proc.wait(10)

    ok = [r for r in results if r.ok]
    itls = [x for r in ok for x in r.itls]
    tokens = sum(r.completion_tokens for r in ok)
    lag = stats["step_lag"]
    t = Table(title=f"sim-engine at time-scale 1, {args.concurrency} concurrent streams, {args.duration:.0f} s window")
    t.add_column("figure")
    t.add_column("value", justify="right")
    t.add_row("requests in the engine at the end (running)", str(running_at_end))
    t.add_row("engine steps in window", str(lag["samples"]))
    t.add_row("step lag p50 (ms)", f"{lag['p50_ms']:.3f}")
    t.add_row("step lag p99 (ms)", f"{lag['p99_ms']:.3f}")
    t.add_row("step lag max (ms)", f"{lag['max_ms']:.3f}")
    t.add_row("engine process CPU (cores)", f"{cpu:.2f}")
    t.add_row("requests completed / failed", f"{len(ok)} / {len(results) - len(ok)}")
    t.add_row("output tokens/s (client side)", f"{tokens / args.duration:,.0f}")
    if itls:
        q = statistics.quantiles(itls, n=100)
        t.add_row("client ITL p50 / p99 (ms)", f"{q[49] * 1e3:.1f} / {q[98] * 1e3:.1f}")
    Console().print(t)
    passed = running_at_end >= min(args.concurrency, 300) * 0.95 and lag["p99_ms"] <= 5.0
    print(
        f"RESULT concurrency={args.concurrency} lag_p99_ms={lag['p99_ms']:.3f} cpu={cpu:.2f} "
        f"{'PASS' if passed else 'FAIL'} (target: >=300 streams, lag p99 <= 5 ms)"
    )
    return 0 if passed else 1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--concurrency", type=int, default=300)
    ap.add_argument("--duration", type=float, default=30.0)
    ap.add_argument("--warmup", type=float, default=5.0)
    ap.add_argument("--prompt-words", type=int, default=200)
    ap.add_argument("--output-tokens", type=int, default=2000)
    sys.exit(asyncio.run(run(ap.parse_args())))


if __name__ == "__main__":
    main()
