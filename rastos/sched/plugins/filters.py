"""Filters: narrow the candidates. A filter that would remove every candidate may instead
keep them all (fail-open) where its parameters say so."""

from __future__ import annotations

import numpy as np
from pydantic import Field

from rastos.sched.fleet import ROLES, FleetState
from rastos.sched.framework import CycleState, Filter, PluginParams, register
from rastos.sched.plugins.producers import prefix_match
from rastos.sched.request import SchedRequest

__all__ = ["HeaderEndpointFilter", "LabelSelectorFilter", "PrefixCacheAffinityFilter", "RoleFilter"]


class _LabelParams(PluginParams):
    matchLabels: dict[str, str] = Field(default_factory=dict)
    failOpen: bool = False


@register
class LabelSelectorFilter(Filter):
    """Keep endpoints whose labels include every ``matchLabels`` pair."""

    type_name = "label-selector-filter"
    Params = _LabelParams

    def filter(
        self, req: SchedRequest, fleet: FleetState, cands: np.ndarray, cycle: CycleState, now: float
    ) -> np.ndarray:
        want = self.params.matchLabels.items()  # type: ignore[attr-defined]
        eps = fleet.endpoints
        keep = np.array([all(eps[i].labels.get(k) == v for k, v in want) for i in cands.tolist()], dtype=bool)
        out = cands[keep] if keep.size else cands
        return cands if (out.size == 0 and self.params.failOpen) else out  # type: ignore[attr-defined]


class _RoleParams(PluginParams):
    roles: list[str] = Field(default_factory=lambda: ["both", "decode"], min_length=1)


@register
class RoleFilter(Filter):
    """Keep endpoints whose role (``both``, ``prefill``, ``decode``) is listed."""

    type_name = "role-filter"
    Params = _RoleParams

    def __init__(self, name: str, params: PluginParams) -> None:
        super().__init__(name, params)
        bad = set(params.roles) - set(ROLES)  # type: ignore[attr-defined]
        if bad:
            raise ValueError(f"unknown roles {sorted(bad)}; roles are {list(ROLES)}")

    def filter(
        self, req: SchedRequest, fleet: FleetState, cands: np.ndarray, cycle: CycleState, now: float
    ) -> np.ndarray:
        roles = set(self.params.roles)  # type: ignore[attr-defined]
        eps = fleet.endpoints
        return cands[np.array([eps[i].role in roles for i in cands.tolist()], dtype=bool)] if cands.size else cands


class _AffinityParams(PluginParams):
    producer: str = Field(default="approx-prefix-cache-producer", alias="prefixMatchInfoProducerName")
    affinityThreshold: float = Field(default=0.80, ge=0, le=1)
    maxTTFTPenaltyMs: float = Field(default=18_000, ge=0)
    peakPrefillThroughput: float = Field(default=15_928, gt=0)
    explorationProbability: float = Field(default=0.0, ge=0, le=1)
    seed: int | None = None


@register
class PrefixCacheAffinityFilter(Filter):
    """llm-d's sticky filter: keep endpoints whose prefix score ≥ ``affinityThreshold``; none →
    keep all; drop stickiness when the best sticky endpoint's estimated TTFT (in-flight
    uncached tokens / peak prefill throughput) exceeds the best other by ``maxTTFTPenaltyMs``.
    """

    type_name = "prefix-cache-affinity-filter"
    Params = _AffinityParams

    def __init__(self, name: str, params: PluginParams) -> None:
        super().__init__(name, params)
        self.reseed(params.seed)  # type: ignore[attr-defined]

    def reseed(self, seed: int | None) -> None:
        self._rng = np.random.default_rng(seed)

    def filter(
        self, req: SchedRequest, fleet: FleetState, cands: np.ndarray, cycle: CycleState, now: float
    ) -> np.ndarray:
        p: _AffinityParams = self.params  # type: ignore[assignment]
        if cands.size <= 1 or not len(req.block_hashes):
            return cands
        score = prefix_match(cycle, p.producer, len(fleet))[cands] / len(req.block_hashes)
        sticky = score >= p.affinityThreshold
        if not sticky.any() or sticky.all():
            return cands
        if p.explorationProbability and self._rng.random() < p.explorationProbability:
            return cands
        ttft = fleet.inflight_tokens[cands] / p.peakPrefillThroughput
        if (ttft[sticky].min() - ttft[~sticky].min()) * 1e3 > p.maxTTFTPenaltyMs:
            return cands
        return cands[sticky]


class _HeaderEndpointParams(PluginParams):
    header: str = "x-rastos-endpoint-hint"


@register
class HeaderEndpointFilter(Filter):
    """Keep only endpoints named (``host:port``, comma list) in a request header, if present
    (the conformance EPP's ``test-epp-endpoint-selection``; useful for tests and canaries)."""

    type_name = "header-endpoint-filter"
    Params = _HeaderEndpointParams

    def filter(
        self, req: SchedRequest, fleet: FleetState, cands: np.ndarray, cycle: CycleState, now: float
    ) -> np.ndarray:
        raw = req.headers.get(self.params.header)  # type: ignore[attr-defined]
        if not raw:
            return cands
        names = {x.strip() for x in raw.split(",") if x.strip()}
        eps = fleet.endpoints
        return cands[np.array([eps[i].address in names for i in cands.tolist()], dtype=bool)]
