"""Pickers: rank the candidates; the first is the pick, the rest are retry fallbacks.

Score-driven (max-score with a random tie-break, weighted-random) and the classic baselines
that ignore scores (round-robin, random, least-request, power-of-two choices).
"""

from __future__ import annotations

import random

import numpy as np
from pydantic import Field

from rastos.sched.fleet import FleetState
from rastos.sched.framework import CycleState, Picker, PluginParams, register
from rastos.sched.request import SchedRequest

__all__ = [
    "LeastRequestPicker",
    "MaxScorePicker",
    "PowerOfTwoPicker",
    "RandomPicker",
    "RoundRobinPicker",
    "WeightedRandomPicker",
]


class _SeedParams(PluginParams):
    seed: int | None = None


class _SeededPicker(Picker):
    Params = _SeedParams

    def __init__(self, name: str, params: PluginParams) -> None:
        super().__init__(name, params)
        self.reseed(params.seed)  # type: ignore[attr-defined]

    def reseed(self, seed: int | None) -> None:
        self.rng = np.random.default_rng(seed)
        self.pyrng = random.Random(seed)  # scalar draws: far cheaper than numpy's per call


@register
class MaxScorePicker(_SeededPicker):
    """Highest score first; ties broken at random (identical prompts would hot-spot otherwise)."""

    type_name = "max-score-picker"

    def pick(
        self, req: SchedRequest, fleet: FleetState, cands: np.ndarray, scores: np.ndarray, cycle: CycleState
    ) -> np.ndarray:
        n = cands.size
        if n == 1:
            return cands
        if n <= 64:  # small fleets: plain Python beats numpy's per-call overhead
            sl = scores.tolist()
            idx = sorted(range(n), key=sl.__getitem__, reverse=True)
            top = sl[idx[0]]
            ties = 1
            while ties < n and sl[idx[ties]] == top:
                ties += 1
            if ties > 1:
                j = int(self.pyrng.random() * ties)
                idx[0], idx[j] = idx[j], idx[0]
            cl = cands.tolist()
            return np.array([cl[i] for i in idx], dtype=np.int64)
        order = np.argsort(scores, kind="stable")[::-1]
        top = scores[order[0]]
        ties = int(np.count_nonzero(scores == top))
        if ties > 1:  # equal best scores: pick among them at random (identical prompts would hot-spot)
            j = int(self.pyrng.random() * ties)
            order = order.copy()
            order[0], order[j] = order[j], order[0]
        return cands[order]


@register
class WeightedRandomPicker(_SeededPicker):
    """Random in proportion to score (A-Res: key = U^(1/w)); zero scores come last."""

    type_name = "weighted-random-picker"

    def pick(
        self, req: SchedRequest, fleet: FleetState, cands: np.ndarray, scores: np.ndarray, cycle: CycleState
    ) -> np.ndarray:
        u = self.rng.random(cands.size)
        w = np.maximum(scores, 0.0)
        with np.errstate(divide="ignore"):
            keys = np.where(w > 0, np.log(u) / np.where(w > 0, w, 1.0), -np.inf)
        return cands[np.lexsort((self.rng.random(cands.size), -keys))]


@register
class RandomPicker(_SeededPicker):
    type_name = "random-picker"

    def pick(
        self, req: SchedRequest, fleet: FleetState, cands: np.ndarray, scores: np.ndarray, cycle: CycleState
    ) -> np.ndarray:
        return self.rng.permutation(cands)


@register
class RoundRobinPicker(Picker):
    """Each request to the next endpoint in turn (Kubernetes Service-like baseline)."""

    type_name = "round-robin-picker"

    def __init__(self, name: str, params: PluginParams) -> None:
        super().__init__(name, params)
        self.counter = 0

    def pick(
        self, req: SchedRequest, fleet: FleetState, cands: np.ndarray, scores: np.ndarray, cycle: CycleState
    ) -> np.ndarray:
        k = self.counter % cands.size
        self.counter += 1
        order = sorted(cands.tolist())
        return np.array(order[k:] + order[:k], dtype=np.int64)


@register
class LeastRequestPicker(_SeededPicker):
    """Fewest requests in flight through this router first (random among equals)."""

    type_name = "least-request-picker"

    def pick(
        self, req: SchedRequest, fleet: FleetState, cands: np.ndarray, scores: np.ndarray, cycle: CycleState
    ) -> np.ndarray:
        return cands[np.lexsort((self.rng.random(cands.size), fleet.inflight_reqs[cands]))]


class _P2CParams(_SeedParams):
    choices: int = Field(default=2, ge=2)


@register
class PowerOfTwoPicker(_SeededPicker):
    """Sample two candidates at random, take the one with fewer requests in flight."""

    type_name = "power-of-two-picker"
    Params = _P2CParams

    def pick(
        self, req: SchedRequest, fleet: FleetState, cands: np.ndarray, scores: np.ndarray, cycle: CycleState
    ) -> np.ndarray:
        perm = self.rng.permutation(cands)
        k = min(self.params.choices, perm.size)  # type: ignore[attr-defined]
        head = perm[:k]
        head = head[np.argsort(fleet.inflight_reqs[head], kind="stable")]
        return np.concatenate([head, perm[k:]])
