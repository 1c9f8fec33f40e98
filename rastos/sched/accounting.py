"""In-flight accounting: what the router has sent each endpoint and not seen finish.

Shared by the gateway and the twin, so both route on the same signals. Per endpoint: requests
in flight, uncached prompt tokens not yet prefilled (the prompt minus the prefix the index says
the endpoint holds; released at the first token), and prompt tokens of requests in flight
(their KV footprint; released at the end).
"""

from __future__ import annotations

from dataclasses import dataclass

from rastos.sched.fleet import FleetState
from rastos.sched.framework import SchedulingResult
from rastos.sched.plugins.producers import prefix_match
from rastos.sched.request import SchedRequest
from rastos.sched.scheduler import Scheduler

__all__ = ["InflightAccounting", "Ticket"]


@dataclass(slots=True)
class Ticket:
    endpoint: int
    uncached: float
    prompt: float
    prefilling: bool = True
    open: bool = True


class InflightAccounting:
    def __init__(self, fleet: FleetState, scheduler: Scheduler) -> None:
        self.fleet = fleet
        self.scheduler = scheduler
        prod = scheduler.prefix_producer()
        self._producer = prod.name if prod is not None else None

    def uncached_tokens(self, req: SchedRequest, result: SchedulingResult, ep: int) -> float:
        if self._producer is None:
            return float(req.prompt_tokens)
        matched = prefix_match(result.cycle, self._producer, len(self.fleet))[ep]
        return max(0.0, req.prompt_tokens - matched * req.block_tokens)

    def start(self, req: SchedRequest, result: SchedulingResult, ep: int) -> Ticket:
        t = Ticket(ep, self.uncached_tokens(req, result, ep), float(req.prompt_tokens))
        f = self.fleet
        f.inflight_reqs[ep] += 1
        f.inflight_tokens[ep] += t.uncached
        f.inflight_prompt_tokens[ep] += t.prompt
        return t

    def first_token(self, t: Ticket) -> None:
        if t.prefilling:
            self.fleet.inflight_tokens[t.endpoint] -= t.uncached
            t.prefilling = False

    def end(self, t: Ticket) -> None:
        if t.open:
            self.first_token(t)
            self.fleet.inflight_reqs[t.endpoint] -= 1
            self.fleet.inflight_prompt_tokens[t.endpoint] -= t.prompt
            t.open = False
