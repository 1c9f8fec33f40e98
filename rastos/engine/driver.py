"""Steps the engine model on the wall clock (scaled), inside an asyncio loop.

Two clocks: the wall clock mapped to engine seconds, ``W = (perf_counter() - t0) / scale``,
and the engine's own virtual clock. While the engine is busy, steps follow each other in
virtual time exactly (step k+1 starts at the end of step k) and each step's results are
applied when the wall clock reaches that end (a timer, armed on an absolute schedule, so
lateness never accumulates); a request arriving meanwhile is stamped with the virtual time of
the step in flight, ``clamp(W, step.start, step.end)``. When idle, virtual time is ``W``.
So reported latencies are exactly the model's, even when the driver cannot keep up with a
small ``time_scale`` (the run then just takes longer in wall time; ``drift_s`` says by how much).

Results (and the step's KV events) are handed to ``on_step`` synchronously right after the
next step has been scheduled: the HTTP layer writes stream chunks while the next step "runs
on the GPU", as vLLM's output processing overlaps the forward pass.

Step lag (how late a step starts on the wall clock compared with its scheduled start) is
recorded for the scale benchmark: it is the simulator's own overhead and must stay small.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable

from rastos.engine.core import EngineCore, StepOutput, StepPlan
from rastos.engine.kv_cache import KVEvent
from rastos.engine.request import EngineRequest

__all__ = ["RealtimeDriver"]

# Event-loop timers wake up to a millisecond late (epoll's granularity). Arming them this much
# early centres the error on zero; results keep their exact engine timestamps either way.
_EARLY = 0.0005


class RealtimeDriver:
    """Real-time (or scaled-time) driver of one :class:`EngineCore`."""

    def __init__(
        self,
        engine: EngineCore,
        *,
        time_scale: float = 1.0,
        on_step: Callable[[StepPlan, StepOutput, list[KVEvent]], None] | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        if time_scale <= 0:
            raise ValueError("time_scale must be positive")
        self.engine = engine
        self.time_scale = time_scale
        self.on_step = on_step
        self.slowdown = 1.0
        self._clock = clock
        self._t0 = clock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._plan: StepPlan | None = None
        self._last_end = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self.lag_samples: deque[float] = deque(maxlen=200_000)
        self.steps = 0
        self.busy_wall = 0.0

    def now(self) -> float:
        """Wall-clock time in engine seconds."""
        return (self._clock() - self._t0) / self.time_scale

    def engine_time(self) -> float:
        """The engine's virtual time: inside the step in flight, or the wall clock if idle."""
        w = self.now()
        plan = self._plan
        if plan is None:
            return w if w > self._last_end else self._last_end
        return plan.start if w < plan.start else plan.end if w > plan.end else w

    @property
    def drift_s(self) -> float:
        """How far (engine seconds) virtual time has fallen behind the scaled wall clock."""
        return max(0.0, self.now() - self.engine_time())

    def _wall_delay(self, t: float) -> float:
        return self._t0 + t * self.time_scale - self._clock()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop

    # ------------------------------------------------------------------ requests
    def submit(self, req: EngineRequest) -> None:
        """Hand a request to the engine now (raises ValueError if it can never run)."""
        req.arrival_time = self.engine_time()
        self.engine.add_request(req)
        if self._plan is None:
            self._start(req.arrival_time, None)

    def abort(self, req: EngineRequest) -> None:
        self.engine.abort_request(req, self.engine_time())

    # ------------------------------------------------------------------ stepping
    def _start(self, start: float, previous_end: float | None) -> None:
        c0 = self._clock()
        plan = self.engine.schedule(start)
        if plan is None:
            self._plan = None
            return
        if self.slowdown != 1.0:
            plan.duration *= self.slowdown
        self._plan = plan
        if previous_end is not None:  # back to back with the previous step
            self.lag_samples.append(max(0.0, -self._wall_delay(previous_end)))
        self.busy_wall += self._clock() - c0
        self._timer = self.loop.call_later(max(0.0, self._wall_delay(plan.end) - _EARLY), self._finish)

    def _finish(self) -> None:
        plan = self._plan
        if plan is None:
            return
        early = self._wall_delay(plan.end)
        if early > _EARLY:  # the timer fired too early: wait for the rest
            self._timer = self.loop.call_later(early - _EARLY, self._finish)
            return
        c0 = self._clock()
        out = self.engine.finish_step(plan, plan.end)
        self._last_end = plan.end
        events = self.engine.take_kv_events()
        self.steps += 1
        self.busy_wall += self._clock() - c0
        # The next step goes to the "GPU" before outputs are handled, as vLLM's engine core
        # schedules on while its API server streams the previous step's tokens.
        self._start(plan.end, plan.end)
        if self.on_step is not None:
            self.on_step(plan, out, events)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._plan = None

    def lag_percentiles(self) -> dict[str, float]:
        """Step lag p50/p99/max in milliseconds over the recorded steps."""
        if not self.lag_samples:
            return {"p50_ms": 0.0, "p99_ms": 0.0, "max_ms": 0.0, "samples": 0}
        s = sorted(self.lag_samples)
        n = len(s)
        return {
            "p50_ms": s[n // 2] * 1e3,
            "p99_ms": s[min(n - 1, int(n * 0.99))] * 1e3,
            "max_ms": s[-1] * 1e3,
            "samples": n,
        }
