"""``rastos bench``: replay a workload through each policy over a simulated fleet and compare.

Each policy gets a fresh scheduler (fresh plugin state) and fresh engines and sees the very
same request stream. Output: a table in the terminal (progress bar while it runs), a JSON file
with the same shape as ``rastos demo --json`` plus the twin's extra figures, and PNG plots
beside it: the TTFT CDF per policy and per-endpoint load over time.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from rastos.engine.profile import EngineProfile, load_profile
from rastos.errors import ConfigError
from rastos.sched.config import load_policy
from rastos.twin.report import SLO, summarize
from rastos.twin.sim import SimResult, Simulation, TwinConfig
from rastos.workload.model import WorkloadRequest
from rastos.workload.synthetic import chat_sessions, shared_prefix
from rastos.workload.traces import load_trace

__all__ = ["WORKLOADS", "BenchSpec", "capacity_rps", "make_workload", "run_bench"]


def capacity_rps(profile: EngineProfile, new_tokens: float, cached_tokens: float, output_tokens: float) -> float:
    """Requests/s one engine sustains on this shape when every reusable prefix
    (``cached_tokens``) is served from its cache: prefill of the ``new_tokens`` only (attention
    over the whole context), decode at the largest batch the KV pool and ``max_num_seqs``
    allow; an estimate from the step-time model. ``rastos bench --load`` is relative to this,
    so at load 1.0 a perfect cache-aware router saturates the fleet (and a cache-oblivious
    one is past saturation well before)."""
    st = profile.step
    prefill = new_tokens * st.t_tok_us * 1e-6 + new_tokens * (cached_tokens + new_tokens / 2) * st.t_attn_ms * 1e-3
    context = cached_tokens + new_tokens
    ctx = context + output_tokens / 2
    batch = max(1.0, min(profile.max_num_seqs, profile.kv_cache_tokens / (context + output_tokens)))
    step = st.step_seconds(int(batch), int(batch * ctx), 0.0)
    decode = output_tokens * step / batch
    return 1.0 / (prefill + decode)


@dataclass
class WorkloadSpec:
    name: str
    make: Callable[[float, int, dict[str, Any]], Iterator[WorkloadRequest]]  # (rate, seed, params)
    shape: Callable[[dict[str, Any]], tuple[float, float, float]]  # mean (new, reusable, output) tokens
    defaults: dict[str, Any]
    per_endpoint: dict[str, float] = field(default_factory=dict)  # defaults that scale with the fleet

    def params(self, endpoints: int, overrides: dict[str, Any]) -> dict[str, Any]:
        scaled = {k: max(1, round(v * endpoints)) for k, v in self.per_endpoint.items()}
        return {**self.defaults, **scaled, **overrides}


def _mean_out(v: Any) -> float:
    return float(v) if isinstance(v, (int, float)) else (v[0] + v[1]) / 2


# inference-perf's shared_prefix shape (groups sharing long system prompts), its multi-turn
# variant, and closed-loop chat sessions.
WORKLOADS: dict[str, WorkloadSpec] = {
    # inference-perf's shared_prefix shape as in llm-d's "KV-cache wins" benchmark: 6,000-token
    # system prompts, 5 users per group, 1,200-token questions; 50 groups per endpoint, so the
    # prefixes fill about 70% of the fleet's KV cache (3x an 8B/H100's) and routing decides.
    "shared-prefix": WorkloadSpec(
        "shared-prefix",
        lambda rate, seed, p: shared_prefix(rate=rate, seed=seed, **p),
        lambda p: (p["question_len"], p["system_prompt_len"], _mean_out(p["output_len"])),
        {"prompts_per_group": 5, "system_prompt_len": 6000, "question_len": 1200, "output_len": (100, 300)},
        {"groups": 50, "n": 375},
    ),
    "shared-prefix-chat": WorkloadSpec(
        "shared-prefix-chat",
        lambda rate, seed, p: shared_prefix(rate=rate, seed=seed, multi_turn=True, **p),
        lambda p: (
            p["question_len"],
            p["system_prompt_len"] + 3 * (p["question_len"] + _mean_out(p["output_len"])),
            _mean_out(p["output_len"]),
        ),
        {
            "groups": 32,
            "prompts_per_group": 8,
            "system_prompt_len": 4000,
            "question_len": 300,
            "output_len": (100, 300),
            "n": 3000,
        },
    ),
    "chat-sessions": WorkloadSpec(
        "chat-sessions",
        lambda rate, seed, p: chat_sessions(session_rate=rate / p["turns"], seed=seed, **p),
        lambda p: (
            p["question_len"],
            p["system_prompt_len"] + (p["turns"] - 1) / 2 * (p["question_len"] + _mean_out(p["output_len"])),
            _mean_out(p["output_len"]),
        ),
        {
            "turns": 4,
            "tenants": 16,
            "system_prompt_len": 3000,
            "question_len": 200,
            "output_len": (64, 256),
            "think_time": 3.0,
        },
        {"sessions": 75},
    ),
}


def make_workload(
    name: str, rate: float, seed: int, params: dict[str, Any], endpoints: int = 8
) -> Iterator[WorkloadRequest]:
    if name not in WORKLOADS:
        raise ConfigError(f"unknown workload {name!r}; built-in workloads: {', '.join(WORKLOADS)}")
    spec = WORKLOADS[name]
    return spec.make(rate, seed, spec.params(endpoints, params))


@dataclass
class BenchSpec:
    policies: list[str]
    endpoints: int = 8
    profile: str = "llama3-8b-h100"
    workload: str | None = "shared-prefix"
    trace: str | None = None
    trace_format: str | None = None
    workload_params: dict[str, Any] = field(default_factory=dict)
    load: float = 0.8
    rate: float | None = None
    time_scale: float = 1.0
    sample: float = 1.0
    limit: int | None = None
    seed: int = 0
    slo_ttft_s: float = 1.0
    slo_tpot_s: float = 0.05
    scrape_interval_s: float = 0.05
    coalesce: bool = True
    pooled_ceiling: bool = True
    profile_overrides: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.trace is None and (self.workload or "shared-prefix") not in WORKLOADS:
            raise ConfigError(f"unknown workload {self.workload!r}; built-in workloads: {', '.join(WORKLOADS)}")
        if not self.policies:
            raise ConfigError("give at least one policy")
        if self.endpoints < 1:
            raise ConfigError("endpoints must be at least 1")
        if self.load <= 0 or (self.rate is not None and self.rate <= 0):
            raise ConfigError("load and rate must be positive")
        if not 0 < self.sample <= 1 or self.time_scale <= 0:
            raise ConfigError("sample must be in (0, 1] and time_scale positive")
        if self.limit is not None and self.limit < 1:
            raise ConfigError("requests must be at least 1")

    def resolved_profile(self) -> EngineProfile:
        p = load_profile(self.profile)
        return p.with_overrides(**self.profile_overrides) if self.profile_overrides else p

    def arrival_rate(self) -> float | None:
        if self.trace is not None:
            return None
        if self.rate is not None:
            return self.rate
        spec = WORKLOADS[self.workload or "shared-prefix"]
        new, reusable, out = spec.shape(spec.params(self.endpoints, self.workload_params))
        return self.load * self.endpoints * capacity_rps(self.resolved_profile(), new, reusable, out)

    def requests(self) -> Iterator[WorkloadRequest]:
        if self.trace is not None:
            return load_trace(self.trace, self.trace_format, time_scale=self.time_scale, sample=self.sample,
                              limit=self.limit, seed=self.seed)  # fmt: skip
        params = dict(self.workload_params)
        if self.limit is not None:
            params["n"] = self.limit
        return make_workload(self.workload or "shared-prefix", self.arrival_rate() or 1.0, self.seed, params,
                             self.endpoints)  # fmt: skip


def _row(name: str, s: dict[str, Any]) -> list[str]:
    def ms(x: float) -> str:
        return "-" if x is None or math.isnan(x) else f"{x * 1e3:,.0f}"

    ceiling = s["prefix_hit_rate_pooled_ceiling"]
    return [
        name,
        f"{ms(s['ttft_p50_s'])} / {ms(s['ttft_p90_s'])} / {ms(s['ttft_p99_s'])}",
        f"{s['tpot_p50_s'] * 1e3:.1f} / {s['tpot_p90_s'] * 1e3:.1f}",
        f"{s['itl_p50_s'] * 1e3:.1f} / {s['itl_p99_s'] * 1e3:.1f}",
        f"{ms(s['e2e_p50_s'])} / {ms(s['e2e_p90_s'])}",
        f"{s['goodput_rps']:.2f} ({s['slo_attainment']:.0%})",
        f"{s['output_tokens_per_s']:,.0f}",
        f"{s['prefix_hit_rate']:.1%}" + (f" / {ceiling:.1%}" if ceiling is not None else ""),
        f"{s['load_imbalance_cv']:.2f}",
        f"{ms(s['queue_time_p99_s'])}",
        str(s["preemptions"]),
        f"{s['requests_ok']}/{s['requests_failed']}",
    ]


_COLUMNS = ("policy", "TTFT p50/p90/p99 ms", "TPOT p50/p90 ms", "ITL p50/p99 ms", "E2E p50/p90 ms",
            "goodput req/s (SLO met)", "out tok/s", "prefix hit / pooled ceiling", "load CV",
            "queue p99 ms", "preempt", "ok/failed")  # fmt: skip


def run_bench(spec: BenchSpec, json_path: Path | None = None, console: Console | None = None) -> dict[str, Any]:
    console = console or Console(width=max(180, Console().width))
    profile = spec.resolved_profile()
    slo = SLO(spec.slo_ttft_s, spec.slo_tpot_s)
    rate = spec.arrival_rate()
    schedulers = {name: load_policy(name) for name in spec.policies}  # validate all before running
    results: dict[str, dict[str, Any]] = {}
    raw: dict[str, SimResult] = {}
    walls: dict[str, float] = {}
    with Progress(console=console, transient=False, refresh_per_second=4) as progress:
        for name, sched in schedulers.items():
            total = spec.limit
            if total is None and spec.trace is None:
                total = (
                    WORKLOADS[spec.workload or "shared-prefix"].params(spec.endpoints, spec.workload_params).get("n")
                )
            task = progress.add_task(f"{name:24s}", total=total)
            cfg = TwinConfig(endpoints=spec.endpoints, profile=profile, scrape_interval=spec.scrape_interval_s,
                             coalesce=spec.coalesce, seed=spec.seed, pooled_ceiling=spec.pooled_ceiling)  # fmt: skip
            sim = Simulation(cfg, sched, spec.requests(), on_progress=lambda k, t=task: progress.advance(t, k))
            t0 = time.perf_counter()
            res = sim.run()
            walls[name] = time.perf_counter() - t0
            progress.update(task, completed=len(res.records), total=len(res.records))
            raw[name] = res
            results[name] = summarize(res, slo, ceiling=res.pooled_hit_rate)
            results[name]["wall_seconds"] = walls[name]
    src = f"trace {Path(spec.trace).name}" if spec.trace else f"workload {spec.workload}"
    load = f"{rate:.1f} req/s (load {spec.load:.0%})" if rate is not None and spec.rate is None else (
        f"{rate:.1f} req/s" if rate else "trace timing")  # fmt: skip
    t = Table(title=f"rastos bench: {src}, {spec.endpoints} x {profile.name}, {load}; "
                    f"SLO TTFT ≤ {spec.slo_ttft_s:g} s, TPOT ≤ {spec.slo_tpot_s * 1e3:g} ms")  # fmt: skip
    for col in _COLUMNS:
        t.add_column(col, justify="left" if col == "policy" else "right")
    for name, s in results.items():
        t.add_row(*_row(name, s))
    console.print(t)
    out = {
        "policies": results,
        "setup": {"endpoints": spec.endpoints, "profile": profile.name, "workload": spec.workload,
                  "trace": spec.trace, "rate_rps": rate, "load": spec.load if spec.rate is None else None,
                  "slo": {"ttft_s": spec.slo_ttft_s, "tpot_s": spec.slo_tpot_s}, "seed": spec.seed},
    }  # fmt: skip
    if json_path is not None:
        json_path.write_bytes(orjson.dumps(out, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY))
        from rastos.twin.plots import plot_load, plot_ttft_cdf

        cdf = json_path.with_name(json_path.stem + "-ttft.png")
        load_png = json_path.with_name(json_path.stem + "-load.png")
        plot_ttft_cdf(raw, cdf, f"TTFT CDF per policy ({src}, {spec.endpoints} endpoints)")
        plot_load(raw, load_png)
        console.print(f"wrote {json_path}, {cdf.name} and {load_png.name}")
    return out
