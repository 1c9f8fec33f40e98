"""What a twin run reports, per policy: latency percentiles, SLO goodput, throughput, cache
use against the pooled ceiling, load balance, queueing and preemptions.

``summarize`` returns the same keys as ``rastos demo --json`` (``ttft_p50_s`` … ``requests_failed``)
plus the twin's extra figures. ITL comes from the engines' per-step inter-token histograms
(fine log-spaced buckets aggregated over engines). The pooled ceiling is the prefix hit rate a
single LRU cache holding the whole fleet's KV blocks would reach on the same request stream
(arrival order, answers inserted after their prompts): what perfect routing would
roughly reach (LRU, not an optimal cache, so a router can land a little above it).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from rastos.twin.records import RequestRecord, SimResult

__all__ = ["SLO", "summarize"]


class SLO:
    """Per-request targets; a request is 'good' when it meets both."""

    def __init__(self, ttft_s: float, tpot_s: float) -> None:
        self.ttft_s = ttft_s
        self.tpot_s = tpot_s

    def met(self, r: RequestRecord) -> bool:
        tpot = r.tpot
        return r.ttft <= self.ttft_s and (math.isnan(tpot) or tpot <= self.tpot_s)


def _pct(xs: np.ndarray, q: float) -> float:
    return float(np.percentile(xs, q)) if xs.size else math.nan


def _hist_pct(bounds: np.ndarray, counts: np.ndarray, q: float) -> float:
    total = counts.sum()
    if total == 0:
        return math.nan
    cum = np.cumsum(counts)
    i = int(np.searchsorted(cum, q / 100 * total))
    return float(bounds[min(i, len(bounds) - 1)])


def summarize(res: SimResult, slo: SLO, *, ceiling: float | None = None) -> dict[str, Any]:
    recs = res.records
    ok = [r for r in recs if r.status == "ok" and not math.isnan(r.finish)]
    ttft = np.array([r.ttft for r in ok])
    tpot = np.array([r.tpot for r in ok if not math.isnan(r.tpot)])
    e2e = np.array([r.e2e for r in ok])
    queue = np.array([r.queue_time for r in ok if not math.isnan(r.queue_time)])
    first = min((r.arrival for r in recs), default=0.0)
    last = max((r.finish for r in ok), default=first)
    span = max(last - first, 1e-9)
    engines = res.engines
    hits = sum(e.stats.prefix_cache_hits for e in engines)
    queries = sum(e.stats.prefix_cache_queries for e in engines)
    # ITL: the engines' inter-token histograms, summed.
    itl_bounds = np.array([*engines[0].stats.itl_fine.bounds, math.inf]) if engines else np.array([math.inf])
    itl_counts = np.sum([np.array(e.stats.itl_fine.counts) for e in engines], axis=0) if engines else np.zeros(1)
    per_ep = np.zeros(len(engines))
    per_ep_tokens = np.zeros(len(engines))
    for r in ok:
        per_ep[r.endpoint] += 1
        per_ep_tokens[r.endpoint] += r.prompt_tokens - r.cached_tokens + r.output_tokens
    mean_tok = per_ep_tokens.mean() if len(engines) else 0.0
    good = sum(1 for r in ok if slo.met(r))
    out: dict[str, Any] = {
        "ttft_p50_s": _pct(ttft, 50),
        "ttft_p90_s": _pct(ttft, 90),
        "ttft_p99_s": _pct(ttft, 99),
        "tpot_p50_s": _pct(tpot, 50),
        "tpot_p90_s": _pct(tpot, 90),
        "output_tokens_per_s": sum(r.output_tokens for r in ok) / span,
        "prefix_hit_rate": hits / queries if queries else 0.0,
        "requests_ok": len(ok),
        "requests_failed": len(recs) - len(ok),
        "tpot_p99_s": _pct(tpot, 99),
        "itl_p50_s": _hist_pct(itl_bounds, itl_counts, 50),
        "itl_p90_s": _hist_pct(itl_bounds, itl_counts, 90),
        "itl_p99_s": _hist_pct(itl_bounds, itl_counts, 99),
        "e2e_p50_s": _pct(e2e, 50),
        "e2e_p90_s": _pct(e2e, 90),
        "e2e_p99_s": _pct(e2e, 99),
        "queue_time_p50_s": _pct(queue, 50),
        "queue_time_p99_s": _pct(queue, 99),
        "goodput_rps": good / span,
        "slo_attainment": good / len(ok) if ok else 0.0,
        "slo": {"ttft_s": slo.ttft_s, "tpot_s": slo.tpot_s},
        "input_tokens_per_s": sum(r.prompt_tokens for r in ok) / span,
        "prefix_hit_rate_pooled_ceiling": ceiling,
        "load_imbalance_cv": float(per_ep_tokens.std() / mean_tok) if mean_tok else 0.0,
        "load_max_over_mean": float(per_ep_tokens.max() / mean_tok) if mean_tok else 0.0,
        "preemptions": int(sum(e.stats.num_preemptions for e in engines)),
        "requests_rejected": sum(1 for r in recs if r.status == "rejected"),
        "requests_dropped": sum(1 for r in recs if r.status == "dropped"),
        "request_share": {f"twin-{i}": float(v / max(1, len(ok))) for i, v in enumerate(per_ep)},
        "simulated_seconds": span,
    }
    return out
