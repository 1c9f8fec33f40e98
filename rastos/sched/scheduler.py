"""The scheduling core: one decision = producers → profiles (filters → weighted scorers →
picker) chosen by the profile handler. Pure with respect to I/O: a function of the request,
the fleet state, the plugins' own state and ``now``. The gateway, the ext_proc server and the
twin call :meth:`Scheduler.schedule` and then :meth:`Scheduler.pre_request` on the result.

Every plugin call is timed into per-plugin histograms (``plugin_duration_seconds`` in the
gateway's metrics) and the whole decision into ``scheduler_e2e``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from rastos.common.histogram import Histogram
from rastos.sched.fleet import FleetState
from rastos.sched.framework import (
    Admission,
    CycleState,
    DataProducer,
    Filter,
    Picker,
    Plugin,
    PreRequest,
    ProfileHandler,
    ProfileResult,
    Rejection,
    ResponseHook,
    SchedulingResult,
    Scorer,
)
from rastos.sched.plugins.producers import ApproxPrefixCacheProducer
from rastos.sched.request import SchedRequest

__all__ = ["LATENCY_BUCKETS", "NoCandidates", "Scheduler", "SchedulerProfile"]

LATENCY_BUCKETS = (1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1)
_clock = time.perf_counter


class NoCandidates(Exception):
    """No endpoint is left for the request after filtering (the EPP answers 503)."""


@dataclass
class SchedulerProfile:
    name: str
    filters: list[Filter]
    scorers: list[tuple[Scorer, float]]
    picker: Picker

    def bind(self, timings: _Timings) -> None:
        """Resolve each plugin's latency histogram once (not per request)."""
        self._fh = [timings.hist("filter", f).observe for f in self.filters]
        self._sh = [timings.hist("scorer", s).observe for s, _ in self.scorers]
        self._ph = timings.hist("picker", self.picker).observe

    def run(
        self, req: SchedRequest, fleet: FleetState, cands: np.ndarray, cycle: CycleState, now: float
    ) -> ProfileResult:
        for f, obs in zip(self.filters, self._fh, strict=True):
            t = _clock()
            cands = f.filter(req, fleet, cands, cycle, now)
            obs(_clock() - t)
            if cands.size == 0:
                raise NoCandidates(f"filter {f.name!r} left no endpoint")
        total = np.zeros(cands.size)
        per: dict[str, np.ndarray] = {}
        for (s, w), obs in zip(self.scorers, self._sh, strict=True):
            t = _clock()
            sc = s.score(req, fleet, cands, cycle, now)
            obs(_clock() - t)
            per[s.name] = sc
            total += w * sc
        t = _clock()
        ranked = self.picker.pick(req, fleet, cands, total, cycle)
        self._ph(_clock() - t)
        return ProfileResult(self.name, ranked, cands, total, per)


@dataclass
class _Timings:
    by_plugin: dict[tuple[str, str, str], Histogram] = field(default_factory=dict)
    e2e: Histogram = field(default_factory=lambda: Histogram(LATENCY_BUCKETS))

    def hist(self, point: str, plugin: Plugin) -> Histogram:
        key = (point, plugin.type_name, plugin.name)
        h = self.by_plugin.get(key)
        if h is None:
            h = self.by_plugin[key] = Histogram(LATENCY_BUCKETS)
        return h

    def record(self, point: str, plugin: Plugin, seconds: float) -> None:
        self.hist(point, plugin).observe(seconds)


class Scheduler:
    """Plugins assembled into one decision procedure."""

    def __init__(
        self,
        profiles: dict[str, SchedulerProfile],
        handler: ProfileHandler,
        *,
        producers: list[DataProducer] | None = None,
        admissions: list[Admission] | None = None,
        pre_requests: list[PreRequest] | None = None,
        response_hooks: list[ResponseHook] | None = None,
        plugins: dict[str, Plugin] | None = None,
        name: str = "custom",
    ) -> None:
        if not profiles:
            raise ValueError("a scheduler needs at least one profile")
        self.name = name
        self.profiles = profiles
        self.handler = handler
        self.producers = producers or []
        self.admissions = admissions or []
        self.pre_requests = pre_requests or []
        self.response_hooks = response_hooks or []
        self.plugins = plugins or {}
        self.timings = _Timings()
        for prof in profiles.values():
            prof.bind(self.timings)
        self._producer_obs = [(p, self.timings.hist("producer", p).observe) for p in self.producers]
        self._pre_obs = [(p, self.timings.hist("pre-request", p).observe) for p in self.pre_requests]
        from rastos.sched.plugins.handlers import SingleProfileHandler

        self._single = next(iter(profiles.values())) if isinstance(handler, SingleProfileHandler) else None
        prefix = [p for p in self.producers if isinstance(p, ApproxPrefixCacheProducer)]
        #: Tokens per hashed block the request analysis must produce (None: no hashing needed).
        self.block_tokens: int | None = prefix[0].block_tokens if prefix else None
        if len({p.block_tokens for p in prefix}) > 1:
            raise ValueError("all prefix producers must use the same blockSizeTokens")

    def reseed(self, seed: int) -> None:
        """Make every randomised plugin deterministic (the twin's reproducible runs)."""
        for i, p in enumerate(self.all_plugins()):
            fn = getattr(p, "reseed", None)
            if fn is not None:
                fn(seed * 1000 + i)

    def all_plugins(self) -> list[Plugin]:
        seen: dict[int, Plugin] = {id(p): p for p in self.plugins.values()}
        for prof in self.profiles.values():
            for p in [*prof.filters, *(s for s, _ in prof.scorers), prof.picker]:
                seen.setdefault(id(p), p)
        return list(seen.values())

    def admit(self, req: SchedRequest, fleet: FleetState, now: float) -> Rejection | None:
        for a in self.admissions:
            t = _clock()
            rej = a.admit(req, fleet, now)
            self.timings.record("admission", a, _clock() - t)
            if rej is not None:
                return rej
        return None

    def schedule(
        self, req: SchedRequest, fleet: FleetState, now: float, candidates: np.ndarray | None = None
    ) -> SchedulingResult:
        """Pick endpoints for ``req``. ``candidates`` defaults to the healthy endpoints
        serving ``req.model``; raises :class:`NoCandidates` when none is left."""
        t0 = _clock()
        if candidates is None:
            candidates = fleet.serving(req.model)
            if candidates.size:
                candidates = candidates[fleet.healthy[candidates]]
        if candidates.size == 0:
            raise NoCandidates("no healthy endpoint serves this model")
        cycle = CycleState()
        for p, obs in self._producer_obs:
            t = _clock()
            p.produce(req, fleet, candidates, cycle, now)
            obs(_clock() - t)
        single = self._single
        if single is not None:  # one profile, the single-profile handler: no negotiation
            pr = single.run(req, fleet, candidates, cycle, now)
            result = SchedulingResult(single.name, {single.name: pr}, cycle)
            self.timings.e2e.observe(_clock() - t0)
            return result
        done: dict[str, ProfileResult] = {}
        while True:
            names = self.handler.pick_profiles(req, self.profiles, done)
            if not names:
                break
            for n in names:
                done[n] = self.profiles[n].run(req, fleet, candidates, cycle, now)
        primary = self.handler.process_results(req, done)
        result = SchedulingResult(primary, done, cycle)
        self.timings.e2e.observe(_clock() - t0)
        return result

    def pre_request(self, req: SchedRequest, result: SchedulingResult, fleet: FleetState, now: float) -> None:
        for p, obs in self._pre_obs:
            t = _clock()
            p.pre_request(req, result, fleet, now)
            obs(_clock() - t)

    def first_token(self, req: SchedRequest, endpoint: int, now: float) -> None:
        for h in self.response_hooks:
            h.on_first_token(req, endpoint, now)

    def complete(self, req: SchedRequest, endpoint: int, now: float, output_tokens: int) -> None:
        for h in self.response_hooks:
            h.on_complete(req, endpoint, now, output_tokens)

    def failed(self, req: SchedRequest, endpoint: int, now: float) -> None:
        for h in self.response_hooks:
            h.on_failure(req, endpoint, now)

    def prefix_producer(self) -> ApproxPrefixCacheProducer | None:
        for p in self.producers:
            if isinstance(p, ApproxPrefixCacheProducer):
                return p
        return None
