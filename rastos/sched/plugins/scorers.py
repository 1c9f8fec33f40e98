"""Scorers: each maps the candidates to scores in [0, 1]; higher is better.

Load scorers read either scraped engine metrics (queue, running, KV use; an endpoint whose
metrics are stale scores 0 on them, fail-closed as the EPP's saturation detector) or the
gateway's own in-flight accounting (no scrape lag). Affinity scorers read what producers put
in the cycle state (prefix matches) or their own tables (sessions).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import ClassVar

import numpy as np
from pydantic import Field

from rastos.sched.fleet import FleetState
from rastos.sched.framework import CycleState, PluginParams, PreRequest, SchedulingResult, Scorer, register
from rastos.sched.plugins.producers import prefix_index, prefix_match
from rastos.sched.request import SchedRequest

__all__ = [
    "ActiveRequestScorer",
    "KVCacheUtilizationScorer",
    "LoraAffinityScorer",
    "NoHitLRUScorer",
    "PrefillCostScorer",
    "PrefixCacheScorer",
    "QueueScorer",
    "RunningRequestsScorer",
    "SaturationAwareAffinityScorer",
    "SessionAffinityScorer",
    "TokenLoadScorer",
    "min_max_low_is_good",
]


_min, _max = np.minimum.reduce, np.maximum.reduce


def min_max_low_is_good(values: np.ndarray) -> np.ndarray:
    """(max − v)/(max − min); all equal → 1.0 (the EPP's queue-scorer normalisation)."""
    if values.size == 0:
        return values
    lo, hi = _min(values), _max(values)
    if hi == lo:
        return np.ones(values.size)
    return (hi - values) / (hi - lo)


def stale_mask(fleet: FleetState, cands: np.ndarray, now: float, threshold_ms: float) -> np.ndarray | None:
    """Candidates whose scraped metrics are older than the threshold; None if all are fresh."""
    stale = fleet.scraped_at[cands] < now - threshold_ms * 1e-3
    return stale if stale.any() else None


class _MetricsParams(PluginParams):
    stalenessThresholdMs: float = Field(default=2000.0, gt=0)


class _MetricScorer(Scorer):
    """Min-max over a scraped metric; stale endpoints get 0."""

    Params = _MetricsParams
    metric: ClassVar[str] = ""

    def score(
        self, req: SchedRequest, fleet: FleetState, cands: np.ndarray, cycle: CycleState, now: float
    ) -> np.ndarray:
        s = min_max_low_is_good(getattr(fleet, self.metric)[cands])
        stale = stale_mask(fleet, cands, now, self.params.stalenessThresholdMs)  # type: ignore[attr-defined]
        if stale is not None:
            s[stale] = 0.0
        return s


@register
class QueueScorer(_MetricScorer):
    """Fewer waiting requests on the engine (``vllm:num_requests_waiting``) is better."""

    type_name = "queue-scorer"
    category = "Distribution"
    metric = "queue"


@register
class RunningRequestsScorer(_MetricScorer):
    """Fewer running requests on the engine (``vllm:num_requests_running``) is better."""

    type_name = "running-requests-size-scorer"
    category = "Distribution"
    metric = "running"


@register
class KVCacheUtilizationScorer(Scorer):
    """``1 − vllm:kv_cache_usage_perc``; stale metrics score 0."""

    type_name = "kv-cache-utilization-scorer"
    category = "Distribution"
    Params = _MetricsParams

    def score(
        self, req: SchedRequest, fleet: FleetState, cands: np.ndarray, cycle: CycleState, now: float
    ) -> np.ndarray:
        s = 1.0 - fleet.kv_usage[cands]
        np.maximum(s, 0.0, out=s)
        stale = stale_mask(fleet, cands, now, self.params.stalenessThresholdMs)  # type: ignore[attr-defined]
        if stale is not None:
            s[stale] = 0.0
        return s


@register
class ActiveRequestScorer(Scorer):
    """Fewer requests in flight through this gateway is better (no scrape lag)."""

    type_name = "active-request-scorer"
    category = "Distribution"

    def score(
        self, req: SchedRequest, fleet: FleetState, cands: np.ndarray, cycle: CycleState, now: float
    ) -> np.ndarray:
        return min_max_low_is_good(fleet.inflight_reqs[cands])


class _TokenLoadParams(PluginParams):
    queueThresholdTokens: float = Field(default=4_194_304, gt=0)


@register
class TokenLoadScorer(Scorer):
    """``1 − min(1, in-flight uncached prompt tokens / threshold)`` (llm-d's token-load-scorer)."""

    type_name = "token-load-scorer"
    category = "Distribution"
    Params = _TokenLoadParams

    def score(
        self, req: SchedRequest, fleet: FleetState, cands: np.ndarray, cycle: CycleState, now: float
    ) -> np.ndarray:
        t = self.params.queueThresholdTokens  # type: ignore[attr-defined]
        return 1.0 - np.minimum(1.0, fleet.inflight_tokens[cands] / t)


class _PrefixParams(PluginParams):
    producer: str = Field(default="approx-prefix-cache-producer", alias="prefixMatchInfoProducerName")
    matchLengthWeight: float = Field(default=0.0, ge=0, le=1)
    matchLengthScaleTokens: float = Field(default=8192, gt=0)


@register
class PrefixCacheScorer(Scorer):
    """Share of the prompt's blocks the endpoint holds; optionally blends in absolute length."""

    type_name = "prefix-cache-scorer"
    category = "Affinity"
    Params = _PrefixParams

    def score(
        self, req: SchedRequest, fleet: FleetState, cands: np.ndarray, cycle: CycleState, now: float
    ) -> np.ndarray:
        p: _PrefixParams = self.params  # type: ignore[assignment]
        matched = prefix_match(cycle, p.producer, len(fleet))[cands]
        total = max(1, len(req.block_hashes))
        ratio = matched / total
        if p.matchLengthWeight:
            length = np.minimum(1.0, matched * req.block_tokens / p.matchLengthScaleTokens) ** 2
            return p.matchLengthWeight * length + (1 - p.matchLengthWeight) * ratio
        return ratio


class _CostParams(PluginParams):
    producer: str = Field(default="approx-prefix-cache-producer", alias="prefixMatchInfoProducerName")
    overheadTokens: float = Field(default=512, ge=1)


@register
class PrefillCostScorer(Scorer):
    """Estimated prefill work before this request's first token, relative to the best.

    ``cost = in-flight uncached tokens + this request's uncached tokens there`` (prefix hits
    discounted), plus a fixed per-request overhead; ``score = min(cost) / cost``. One number
    folds prefix affinity and prefill load together: a warm endpoint wins until its queue of
    prefill work outweighs what its cache saves (the TTFT view of "sticky until saturated").
    """

    type_name = "prefill-cost-scorer"
    category = "Affinity"
    Params = _CostParams

    def score(
        self, req: SchedRequest, fleet: FleetState, cands: np.ndarray, cycle: CycleState, now: float
    ) -> np.ndarray:
        p: _CostParams = self.params  # type: ignore[assignment]
        matched = prefix_match(cycle, p.producer, len(fleet))[cands]
        cost = np.maximum(req.prompt_tokens - matched * req.block_tokens, 0.0)
        cost += fleet.inflight_tokens[cands]
        cost += p.overheadTokens
        return _min(cost) / cost


class _SaturationParams(PluginParams):
    producer: str = Field(default="approx-prefix-cache-producer", alias="prefixMatchInfoProducerName")
    affinityThreshold: float = Field(default=0.8, ge=0, le=1)
    peakPrefillThroughput: float = Field(default=20_480, gt=0)
    maxTTFTPenaltyMs: float = Field(default=2_000, ge=0)
    minTTFTPenaltyMs: float | None = Field(default=None, ge=0)


@register
class SaturationAwareAffinityScorer(Scorer):
    """1 for the warm endpoints (matching ≥ threshold × the best match) unless stickiness is
    clearly worse: when the warm endpoints' queued prefill work would delay the first token by
    more than the penalty over the best other candidate, every candidate scores 0.

    With ``minTTFTPenaltyMs`` the penalty adapts to cache pressure: it is the minimum when the
    spill target's cache has room (a second copy of the prefix evicts nothing, so spreading a
    hot prefix is cheap) and rises to ``maxTTFTPenaltyMs`` as that cache fills (a copy would
    evict other prefixes, and stickiness is what keeps hit rates up under pressure).
    """

    type_name = "saturation-aware-affinity-scorer"
    category = "Affinity"
    Params = _SaturationParams

    def score(
        self, req: SchedRequest, fleet: FleetState, cands: np.ndarray, cycle: CycleState, now: float
    ) -> np.ndarray:
        p: _SaturationParams = self.params  # type: ignore[assignment]
        matched = prefix_match(cycle, p.producer, len(fleet))[cands]
        best = matched.max() if matched.size else 0
        if best <= 0:
            return np.zeros(len(cands))
        warm = matched >= p.affinityThreshold * best
        tok = fleet.inflight_tokens[cands]
        uncached = np.maximum(0.0, req.prompt_tokens - matched * req.block_tokens)
        ttft = (tok + uncached) / p.peakPrefillThroughput
        gap = ttft[warm].min() - ttft.min()
        if gap <= 0:
            return warm.astype(np.float64)
        penalty = p.maxTTFTPenaltyMs
        if p.minTTFTPenaltyMs is not None:
            index = prefix_index(cycle, p.producer)
            target = int(cands[int(np.argmin(np.where(warm, np.inf, ttft)))])
            occ = min(1.0, index.size(target) / index.capacity(target)) if index is not None else 1.0
            penalty = p.minTTFTPenaltyMs + (p.maxTTFTPenaltyMs - p.minTTFTPenaltyMs) * occ
        if gap * 1e3 > penalty:
            return np.zeros(len(cands))
        return warm.astype(np.float64)


class _SessionParams(PluginParams):
    ttlSeconds: float = Field(default=300.0, gt=0)
    maxSessions: int = Field(default=100_000, gt=0)
    header: str = "x-session-id"


@register
class SessionAffinityScorer(Scorer, PreRequest):
    """1.0 for the endpoint this session last went to (``x-session-id``), within a TTL."""

    type_name = "session-affinity-scorer"
    category = "Affinity"
    Params = _SessionParams

    def __init__(self, name: str, params: PluginParams) -> None:
        super().__init__(name, params)
        self.sessions: OrderedDict[str, tuple[int, float]] = OrderedDict()

    def _session(self, req: SchedRequest) -> str | None:
        h = self.params.header  # type: ignore[attr-defined]
        return req.session_id if h == "x-session-id" else req.headers.get(h)

    def score(
        self, req: SchedRequest, fleet: FleetState, cands: np.ndarray, cycle: CycleState, now: float
    ) -> np.ndarray:
        out = np.zeros(len(cands))
        sid = self._session(req)
        if sid is None:
            return out
        hit = self.sessions.get(sid)
        if hit is None or now - hit[1] > self.params.ttlSeconds:  # type: ignore[attr-defined]
            return out
        out[cands == hit[0]] = 1.0
        return out

    def pre_request(self, req: SchedRequest, result: SchedulingResult, fleet: FleetState, now: float) -> None:
        sid = self._session(req)
        if sid is None:
            return
        self.sessions[sid] = (result.endpoint, now)
        self.sessions.move_to_end(sid)
        while len(self.sessions) > self.params.maxSessions:  # type: ignore[attr-defined]
            self.sessions.popitem(last=False)


@register
class LoraAffinityScorer(Scorer):
    """1.0 adapter running, 0.8 room to load it, 0.6 adapter waiting, 0 otherwise (the EPP's)."""

    type_name = "lora-affinity-scorer"
    category = "Affinity"

    def score(
        self, req: SchedRequest, fleet: FleetState, cands: np.ndarray, cycle: CycleState, now: float
    ) -> np.ndarray:
        out = np.zeros(len(cands))
        if req.lora is None:
            return out + 1.0
        for i, ep in enumerate(cands.tolist()):
            running = fleet.lora_running[ep]
            if req.lora in running:
                out[i] = 1.0
            elif req.lora in fleet.lora_waiting[ep]:
                out[i] = 0.6
            elif len(running) < fleet.max_loras[ep] or fleet.max_loras[ep] == 0:
                out[i] = 0.8
        return out


class _NoHitParams(PluginParams):
    producer: str = Field(default="approx-prefix-cache-producer", alias="prefixMatchInfoProducerName")
    lruSize: int = Field(default=1024, gt=0)


@register
class NoHitLRUScorer(Scorer, PreRequest):
    """Spreads cold requests (no prefix hit anywhere): the endpoint least recently given a cold
    request scores highest; warm requests score a neutral 0.5 everywhere."""

    type_name = "no-hit-lru-scorer"
    category = "Distribution"
    Params = _NoHitParams

    def __init__(self, name: str, params: PluginParams) -> None:
        super().__init__(name, params)
        self.lru: OrderedDict[int, float] = OrderedDict()
        self._tick = time.monotonic()

    def _cold(self, cycle: CycleState, n: int) -> bool:
        return not prefix_match(cycle, self.params.producer, n).any()  # type: ignore[attr-defined]

    def score(
        self, req: SchedRequest, fleet: FleetState, cands: np.ndarray, cycle: CycleState, now: float
    ) -> np.ndarray:
        if not self._cold(cycle, len(fleet)):
            return np.full(len(cands), 0.5)
        pos = {ep: i for i, ep in enumerate(self.lru)}  # 0 = least recently used
        n = max(1, len(self.lru))
        return np.array([1.0 if ep not in pos else 1.0 - (pos[ep] + 1) / (n + 1) for ep in cands.tolist()])

    def pre_request(self, req: SchedRequest, result: SchedulingResult, fleet: FleetState, now: float) -> None:
        if self._cold(result.cycle, len(fleet)):
            ep = result.endpoint
            self.lru.pop(ep, None)
            self.lru[ep] = now
            while len(self.lru) > self.params.lruSize:  # type: ignore[attr-defined]
                self.lru.popitem(last=False)


class _LatencyParams(PluginParams):
    producer: str = Field(default="approx-prefix-cache-producer", alias="prefixMatchInfoProducerName")
    profile: str = "llama3-8b-h100"
    chunkTokens: float = Field(default=8192, gt=0)
    expectedOutputTokens: float = Field(default=256, ge=0)
    tpotWeight: float = Field(default=1.0, ge=0)


@register
class LatencyCostScorer(Scorer):
    """Predicted latency of this request on each candidate, from the engine's step-time model.

    Prefill: the endpoint's queued uncached tokens plus this request's (prefix hits
    discounted) go through ``chunkTokens``-token steps, each also paying the per-step overhead
    and the KV reads of the decodes in flight (their context ≈ the prompt tokens in flight);
    decode: one step of the batch this request would join, times ``expectedOutputTokens``
    (scaled by ``tpotWeight``). ``score = min(cost)/cost``. Unlike a token count, it sees
    that an endpoint full of long decodes prefills slowly, and what a request does to TPOT.
    """

    type_name = "latency-cost-scorer"
    category = "Affinity"
    Params = _LatencyParams

    def __init__(self, name: str, params: PluginParams) -> None:
        super().__init__(name, params)
        from rastos.engine.profile import load_profile

        st = load_profile(params.profile).step  # type: ignore[attr-defined]
        self._over = st.t_over_ms * 1e-3
        self._w = st.t_w_ms * 1e-3
        self._tok = st.t_tok_us * 1e-6
        self._kv = st.t_kv_us * 1e-6
        self._attn = st.t_attn_ms * 1e-3

    def score(
        self, req: SchedRequest, fleet: FleetState, cands: np.ndarray, cycle: CycleState, now: float
    ) -> np.ndarray:
        p: _LatencyParams = self.params  # type: ignore[assignment]
        matched = prefix_match(cycle, p.producer, len(fleet))[cands] * req.block_tokens
        new = np.maximum(req.prompt_tokens - matched, 1.0)
        queued = fleet.inflight_tokens[cands]
        ctx = fleet.inflight_prompt_tokens[cands]
        n = fleet.inflight_reqs[cands]
        work = queued + new
        steps = np.ceil(work / p.chunkTokens)
        prefill = work * self._tok + steps * (self._over + ctx * self._kv) + new * (matched + new / 2) * self._attn
        step = self._over + np.maximum(self._w, (n + 1) * self._tok) + (ctx + req.prompt_tokens) * self._kv
        cost = prefill + p.tpotWeight * p.expectedOutputTokens * step
        return _min(cost) / cost
