"""Fidelity: one small workload live (gateway + sim-engine processes) and in the twin.

Same requests (token-id prompts, fixed output lengths, same arrival times), same policy, same
engine profile. The twin must predict the live TTFT p50 within 15 % and the fleet's prefix
hit rate within 5 points.
"""

import asyncio
import time

import aiohttp
import numpy as np

from rastos.engine.profile import load_profile
from rastos.launch import ProcessGroup, free_port, scrape_metrics, wait_ready
from rastos.loadgen.client import send_request
from rastos.sched.config import load_policy
from rastos.twin import Simulation, TwinConfig
from rastos.workload.synthetic import shared_prefix

ENGINES = 2
MODEL = "fid-model"


def workload():
    # Prefill-dominated TTFT (4,500 new tokens after a shared 1,000-token system prompt), so the
    # live path's own few milliseconds (HTTP, gateway, event loops) stay well inside 15 %.
    return list(shared_prefix(groups=3, prompts_per_group=40, system_prompt_len=1000, question_len=4500,
                              output_len=(20, 40), rate=4.0, n=80, seed=11, model=MODEL))  # fmt: skip


async def run_live(reqs) -> tuple[float, float]:
    group = ProcessGroup()
    with group.running():
        ports = [free_port() for _ in range(ENGINES)]
        procs = [group.spawn(["sim-engine", "--port", str(p), "--model", MODEL, "--seed", str(i)])
                 for i, p in enumerate(ports)]  # fmt: skip
        urls = [f"http://127.0.0.1:{p}" for p in ports]
        await asyncio.gather(*(wait_ready(u, proc=pr) for u, pr in zip(urls, procs, strict=True)))
        gport = free_port()
        gw = group.spawn(["serve", "--endpoints", ",".join(urls), "--port", str(gport), "--policy", "default"])
        gurl = f"http://127.0.0.1:{gport}"
        await wait_ready(gurl, path="/ready", proc=gw)
        async with aiohttp.ClientSession() as s:
            t0 = time.perf_counter()

            async def one(w):
                delay = w.arrival - (time.perf_counter() - t0)
                if delay > 0:
                    await asyncio.sleep(delay)  # open-loop arrivals at the workload's times
                body = {"model": MODEL, "prompt": w.prompt.tolist(), "max_tokens": w.max_tokens,
                        "ignore_eos": True, "stream": True}  # fmt: skip
                return await send_request(s, gurl + "/v1/completions", body)

            results = await asyncio.gather(*(one(w) for w in reqs))
        samples = await asyncio.gather(*(scrape_metrics(u) for u in urls))
    assert all(r.ok for r in results), [r.error for r in results if not r.ok][:3]
    hits = sum(x["vllm:prefix_cache_hits_total"] for x in samples)
    queries = sum(x["vllm:prefix_cache_queries_total"] for x in samples)
    return float(np.median([r.ttft for r in results])), hits / queries


def run_twin(reqs) -> tuple[float, float]:
    cfg = TwinConfig(endpoints=ENGINES, profile=load_profile("llama3-8b-h100"), model=MODEL)
    res = Simulation(cfg, load_policy("default"), reqs).run()
    ok = [r for r in res.records if r.status == "ok"]
    assert len(ok) == len(reqs)
    hits = sum(e.stats.prefix_cache_hits for e in res.engines)
    queries = sum(e.stats.prefix_cache_queries for e in res.engines)
    return float(np.median([r.ttft for r in ok])), hits / queries


async def test_twin_predicts_the_live_fleet():
    reqs = workload()
    live_p50, live_hit = await run_live(reqs)
    twin_p50, twin_hit = run_twin(reqs)
    print(
        f"TTFT p50 live {live_p50 * 1e3:.1f} ms twin {twin_p50 * 1e3:.1f} ms; hit live {live_hit:.3f} twin {twin_hit:.3f}"
    )
    assert abs(live_p50 - twin_p50) <= 0.15 * twin_p50
    assert abs(live_hit - twin_hit) <= 0.05
