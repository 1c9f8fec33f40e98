"""Benchmark: what the gateway adds, and how much it carries on one core.

Starts two constant-time upstream stubs (``bench/stub_upstream.py``: they answer at once, so
nothing but the gateway varies) and a gateway pinned to its own core (default policy), then
in one run:

1. added latency: Poisson arrivals, each request sent at random either straight to an engine
   or through the gateway (paired in time, so machine noise hits both alike), the gateway
   receiving 200 req/s; end-to-end latency p50/p99 of each and the difference
   (non-streaming);
2. added time to first streamed token, the same way with streaming requests;
3. the most requests/s the gateway proxies (closed loop, many concurrent clients),
   non-streaming and streaming, with the gateway's CPU use.

A bare passthrough proxy (``bench/bare_proxy.py``: same HTTP stack, no routing) is measured
alongside, so the share of HTTP plumbing in the gateway's cost is visible.
Targets (issue 3): added p50 ≤ 1 ms at 200 req/s; added TTFT ≤ 1 ms.

    python bench/gateway_overhead.py
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import subprocess
import sys
import time

import aiohttp
from rich.console import Console
from rich.table import Table

from rastos.launch import ProcessGroup, free_port, wait_ready
from rastos.loadgen.client import RequestResult, send_request


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pct(xs: list[float], q: int) -> float:
    return (
        statistics.quantiles(xs, n=100, method="inclusive")[q - 1] if len(xs) > 1 else (xs[0] if xs else float("nan"))
    )


def body(i: int, stream: bool, max_tokens: int) -> dict:
    return {
        "model": "m",
        # unique prompts: no shared prefix, so routing is load-driven, as for direct requests
        "messages": [{"role": "system", "content": f"You are terse assistant number {i}. " * 16},
                     {"role": "user", "content": f"question number {i}"}],
        "max_tokens": max_tokens,
        "ignore_eos": True,
        "stream": stream,
    }  # fmt: skip


async def mixed_rate(session: aiohttp.ClientSession, paths: list[list[str]], rate: float, n: int, stream: bool,
                     max_tokens: int, seed: int) -> list[list[RequestResult]]:  # fmt: skip
    """Poisson arrivals at ``rate`` in total; each picks a path at random, then one of its URLs."""
    rng = random.Random(seed)
    tasks: list[list[asyncio.Task[RequestResult]]] = [[] for _ in paths]
    t = time.perf_counter()
    for i in range(n):
        t += rng.expovariate(rate)
        delay = t - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        k = rng.randrange(len(paths))
        url = rng.choice(paths[k])
        tasks[k].append(asyncio.create_task(send_request(session, url, body(i, stream, max_tokens))))
    return [list(await asyncio.gather(*ts)) for ts in tasks]


async def closed_loop(session: aiohttp.ClientSession, url: str, concurrency: int, duration: float, stream: bool,
                      max_tokens: int) -> int:  # fmt: skip
    done = 0
    stop = time.perf_counter() + duration

    async def worker(w: int) -> None:
        nonlocal done
        i = 0
        while time.perf_counter() < stop:
            r = await send_request(session, url, body(w * 100000 + i, stream, max_tokens))
            i += 1
            if r.ok:
                done += 1

    await asyncio.gather(*(worker(w) for w in range(concurrency)))
    return done


async def run(args: argparse.Namespace) -> None:
    console = Console()
    group = ProcessGroup()
    cores = os.cpu_count() or 1
    with group.running():
        eports = [free_port() for _ in range(2)]
        stub = os.path.join(os.path.dirname(os.path.abspath(__file__)), "stub_upstream.py")
        for p in eports:
            group.procs.append(subprocess.Popen([sys.executable, stub, "--port", str(p), "--chunks",
                                                 str(args.max_tokens)], start_new_session=True))  # fmt: skip
        eurls = [f"http://127.0.0.1:{p}" for p in eports]
        await asyncio.gather(*(wait_ready(u) for u in eurls))
        gport = free_port()
        if os.environ.get("GW_WRAP"):
            gw = subprocess.Popen([sys.executable, os.environ["GW_WRAP"], "--endpoints", ",".join(eurls), "--port",
                                   str(gport)], start_new_session=True)  # fmt: skip
            group.procs.append(gw)
        else:
            gw = group.spawn(["serve", "--endpoints", ",".join(eurls), "--port", str(gport)])
        gurl = f"http://127.0.0.1:{gport}"
        bport = free_port()
        bare = subprocess.Popen([sys.executable, os.path.join(os.path.dirname(os.path.abspath(__file__)), "bare_proxy.py"),
                                 "--port", str(bport), "--upstreams", ",".join(eurls)], start_new_session=True)  # fmt: skip
        group.procs.append(bare)
        burl = f"http://127.0.0.1:{bport}"
        await wait_ready(gurl, path="/ready")
        await wait_ready(burl, path="/ready")
        if cores > 1 and args.pin:  # the proxies on the last core; upstreams and this client elsewhere
            os.sched_setaffinity(gw.pid, {cores - 1})
            os.sched_setaffinity(bare.pid, {cores - 1})
            for p in group.procs:
                if p is not gw and p is not bare:
                    os.sched_setaffinity(p.pid, set(range(cores - 1)))
            os.sched_setaffinity(0, set(range(cores - 1)))
        conn = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=conn) as s:
            chat = "/v1/chat/completions"
            # direct: the same upstreams, picked at random; the bare proxy; the gateway
            targets = [[u + chat for u in eurls], [burl + chat], [gurl + chat]]
            await mixed_rate(s, targets, 300, 300, False, args.max_tokens, 0)  # warm connections and caches
            rows = {}
            for stream in (False, True):
                direct, bare_r, via = await mixed_rate(s, targets, 3 * args.rate, 3 * args.n, stream,
                                                       args.max_tokens, 1)  # fmt: skip
                key = "ttft" if stream else "latency"
                dv = [getattr(r, key) for r in direct if r.ok]
                bv = [getattr(r, key) for r in bare_r if r.ok]
                vv = [getattr(r, key) for r in via if r.ok]
                rows[stream] = (dv, bv, vv, sum(not r.ok for r in direct + bare_r + via))
            throughput = {}
            for stream in (False, True):
                c0, t0 = cpu_seconds(gw.pid), time.perf_counter()
                n = await closed_loop(s, gurl + chat, args.concurrency, args.duration, stream, args.max_tokens)
                wall = time.perf_counter() - t0
                throughput[stream] = (n / wall, (cpu_seconds(gw.pid) - c0) / wall)
    t = Table(title=f"gateway overhead: {args.rate:.0f} req/s Poisson through the gateway (and as many direct), "
                    f"~{args.n} requests each way, {args.max_tokens} output tokens")  # fmt: skip
    for col in ("measure", "direct p50 / p99 ms", "gateway p50 / p99 ms", "gateway adds p50 / p99 ms",
                "bare proxy adds p50 / p99 ms", "failed"):  # fmt: skip
        t.add_column(col, justify="right")
    for stream, (dv, bv, vv, failed) in rows.items():
        name = "time to first token (stream)" if stream else "end-to-end latency"
        t.add_row(
            name,
            f"{pct(dv, 50) * 1e3:.2f} / {pct(dv, 99) * 1e3:.2f}",
            f"{pct(vv, 50) * 1e3:.2f} / {pct(vv, 99) * 1e3:.2f}",
            f"{(pct(vv, 50) - pct(dv, 50)) * 1e3:.2f} / {(pct(vv, 99) - pct(dv, 99)) * 1e3:.2f}",
            f"{(pct(bv, 50) - pct(dv, 50)) * 1e3:.2f} / {(pct(bv, 99) - pct(dv, 99)) * 1e3:.2f}",
            str(failed),
        )
        print(f"RESULT {'ttft' if stream else 'latency'} added_p50_ms={(pct(vv, 50) - pct(dv, 50)) * 1e3:.3f} "
              f"added_p99_ms={(pct(vv, 99) - pct(dv, 99)) * 1e3:.3f}")  # fmt: skip
    console.print(t)
    t2 = Table(title=f"gateway throughput, closed loop, {args.concurrency} concurrent clients, gateway on one core")
    for col in ("mode", "requests/s measured", "gateway CPU (cores)", "requests/s per gateway core"):
        t2.add_column(col, justify="right")
    for stream, (rps, cpu) in throughput.items():
        per_core = rps / cpu if cpu > 0 else float("nan")
        t2.add_row("streaming" if stream else "non-streaming", f"{rps:,.0f}", f"{cpu:.2f}", f"{per_core:,.0f}")
        print(f"RESULT throughput stream={stream} rps={rps:.0f} gateway_cpu={cpu:.2f} rps_per_core={per_core:.0f}")
    console.print(t2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rate", type=float, default=200.0)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--max-tokens", type=int, default=8)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument(
        "--pin",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="pin the gateway to its own core (throughput per core needs it)",
    )
    if sys.platform != "linux":
        raise SystemExit("this benchmark pins processes to cores and needs Linux")
    asyncio.run(run(ap.parse_args()))


if __name__ == "__main__":
    main()
