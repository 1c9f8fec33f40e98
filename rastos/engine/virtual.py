"""Step one engine in virtual time: arrivals at given instants, steps back to back.

The smallest discrete-event loop there is (one engine, no router), used by the tests that
check the engine's physics and by the engine-speed benchmark; the fleet twin generalises it.
"""

from __future__ import annotations

import heapq
import itertools

from rastos.engine.core import EngineCore, StepPlan
from rastos.engine.request import EngineRequest

__all__ = ["VirtualRunner"]


class VirtualRunner:
    """Drives an :class:`EngineCore` on a virtual clock starting at 0."""

    def __init__(self, engine: EngineCore) -> None:
        self.engine = engine
        self.now = 0.0
        self._arrivals: list[tuple[float, int, EngineRequest]] = []
        self._seq = itertools.count()
        self.plans: list[StepPlan] = []
        self.finished: list[EngineRequest] = []
        self.keep_plans = True

    def submit(self, req: EngineRequest, at: float | None = None) -> EngineRequest:
        t = self.now if at is None else at
        heapq.heappush(self._arrivals, (t, next(self._seq), req))
        return req

    def _admit(self) -> None:
        arr = self._arrivals
        while arr and arr[0][0] <= self.now:
            t, _, req = heapq.heappop(arr)
            req.arrival_time = t
            self.engine.add_request(req)

    def run(self, until: float = float("inf"), max_steps: int | None = None) -> float:
        """Run until idle with no arrivals left, or past ``until``; returns the clock."""
        eng = self.engine
        steps = 0
        while self.now < until:
            self._admit()
            if not eng.has_work():
                if not self._arrivals:
                    break
                self.now = self._arrivals[0][0]
                continue
            plan = eng.schedule(self.now)
            if plan is None:
                raise RuntimeError("engine has waiting work it can never schedule")
            out = eng.finish_step(plan, plan.end)
            self.now = plan.end
            if self.keep_plans:
                self.plans.append(plan)
            self.finished.extend(out.finished)
            steps += 1
            if max_steps is not None and steps >= max_steps:
                break
        return self.now
