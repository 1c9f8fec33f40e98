"""Peer routers' decision rules, reimplemented from their published descriptions.

For side-by-side comparison in the twin (``rastos bench``); every rule runs on the same
signals our own policies get (the approximate prefix index, this router's in-flight counts,
scraped engine metrics), so differences come from the rules. Sources are the descriptions in
``shared/reference/endpoint-picking.md`` (never their code):

- ``sglang-cache-aware-picker``: the SGLang router's (and vLLM router's) ``cache_aware``
  policy: if load is imbalanced (``max − min > balanceAbsThreshold`` and
  ``max > balanceRelThreshold × min``, load = in-flight requests) pick the least loaded;
  else if the best prefix match rate exceeds ``cacheThreshold`` pick the longest match, else
  the worker with the smallest tree (fewest indexed blocks). CLI defaults 0.3 / 64 / 1.5.
- ``dynamo-kv-scorer``: NVIDIA Dynamo's KV router cost ``overlapScoreWeight ×
  potential_prefill_blocks + potential_active_blocks`` (lowest wins; temperature 0).
- ``aibrix-prefix-cache-picker``: AIBrix ``prefix-cache``: if running requests differ by more
  than ``imbalanceAbsCount`` pick the least-request pod; else among pods with a match, by match
  desc then running asc, the first whose running ≤ mean + ``stdDevFactor``·σ; no match →
  least-request.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from rastos.sched.fleet import FleetState
from rastos.sched.framework import CycleState, PluginParams, Scorer, register
from rastos.sched.plugins.pickers import _SeededPicker
from rastos.sched.plugins.producers import prefix_index, prefix_match
from rastos.sched.request import SchedRequest

__all__ = ["AIBrixPrefixCachePicker", "DynamoKVScorer", "SGLangCacheAwarePicker"]


def _least(rng: np.random.Generator, cands: np.ndarray, load: np.ndarray) -> np.ndarray:
    """Candidates by load ascending, ties at random."""
    return cands[np.lexsort((rng.random(cands.size), load))]


def _first(cands: np.ndarray, i: int, rest: np.ndarray) -> np.ndarray:
    """``cands[i]`` first, then ``rest`` without it."""
    pick = cands[i]
    return np.concatenate(([pick], rest[rest != pick]))


class _SGLangParams(PluginParams):
    producer: str = Field(default="approx-prefix-cache-producer", alias="prefixMatchInfoProducerName")
    cacheThreshold: float = Field(default=0.3, ge=0, le=1)
    balanceAbsThreshold: float = Field(default=64, ge=0)
    balanceRelThreshold: float = Field(default=1.5, ge=1)
    seed: int | None = None


@register
class SGLangCacheAwarePicker(_SeededPicker):
    type_name = "sglang-cache-aware-picker"
    Params = _SGLangParams

    def pick(
        self, req: SchedRequest, fleet: FleetState, cands: np.ndarray, scores: np.ndarray, cycle: CycleState
    ) -> np.ndarray:
        p: _SGLangParams = self.params  # type: ignore[assignment]
        load = fleet.inflight_reqs[cands]
        by_load = _least(self.rng, cands, load)
        lo, hi = float(load.min()), float(load.max())
        if hi - lo > p.balanceAbsThreshold and hi > p.balanceRelThreshold * lo:
            return by_load
        total = max(1, len(req.block_hashes))
        rate = prefix_match(cycle, p.producer, len(fleet))[cands] / total
        if rate.size and rate.max() > p.cacheThreshold:
            return _first(cands, int(np.argmax(rate)), by_load)
        index = prefix_index(cycle, p.producer)
        sizes = np.array([index.size(int(c)) for c in cands]) if index is not None else np.zeros(cands.size)
        return _first(cands, int(np.argmin(sizes)), by_load)


class _DynamoParams(PluginParams):
    producer: str = Field(default="approx-prefix-cache-producer", alias="prefixMatchInfoProducerName")
    overlapScoreWeight: float = Field(default=1.0, ge=0)
    kvBlockSize: int = Field(default=16, ge=1)


@register
class DynamoKVScorer(Scorer):
    """Dynamo's logit turned into a score: lowest cost scores 1, highest 0."""

    type_name = "dynamo-kv-scorer"
    category = "Affinity"
    Params = _DynamoParams

    def score(
        self, req: SchedRequest, fleet: FleetState, cands: np.ndarray, cycle: CycleState, now: float
    ) -> np.ndarray:
        p: _DynamoParams = self.params  # type: ignore[assignment]
        overlap_tokens = prefix_match(cycle, p.producer, len(fleet))[cands] * req.block_tokens
        prefill_blocks = np.maximum(req.prompt_tokens - overlap_tokens, 0.0) / p.kvBlockSize
        active_blocks = (fleet.inflight_prompt_tokens[cands] + req.prompt_tokens) / p.kvBlockSize
        logit = p.overlapScoreWeight * prefill_blocks + active_blocks
        lo, hi = logit.min(), logit.max()
        if hi == lo:
            return np.ones(cands.size)
        return (hi - logit) / (hi - lo)


class _AIBrixParams(PluginParams):
    producer: str = Field(default="approx-prefix-cache-producer", alias="prefixMatchInfoProducerName")
    imbalanceAbsCount: float = Field(default=8, ge=0)
    stdDevFactor: float = Field(default=1.0, ge=0)
    seed: int | None = None


@register
class AIBrixPrefixCachePicker(_SeededPicker):
    type_name = "aibrix-prefix-cache-picker"
    Params = _AIBrixParams

    def pick(
        self, req: SchedRequest, fleet: FleetState, cands: np.ndarray, scores: np.ndarray, cycle: CycleState
    ) -> np.ndarray:
        p: _AIBrixParams = self.params  # type: ignore[assignment]
        running = fleet.running[cands]
        by_load = _least(self.rng, cands, running)
        if running.max() - running.min() > p.imbalanceAbsCount:
            return by_load
        match = prefix_match(cycle, p.producer, len(fleet))[cands]
        if not match.any():
            return by_load
        limit = running.mean() + p.stdDevFactor * running.std()
        order = np.lexsort((running, -match))
        for i in order:
            if match[i] > 0 and running[i] <= limit:
                return _first(cands, int(i), by_load)
        return by_load
