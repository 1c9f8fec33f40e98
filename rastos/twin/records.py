"""What one twin run produces: a record per request and the run's result.

Kept apart from the event loop so reports and plots depend on the data, not the simulator.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from rastos.engine.core import EngineCore

__all__ = ["RequestRecord", "SimResult"]


@dataclass(slots=True)
class RequestRecord:
    id: int
    endpoint: int
    arrival: float
    first_token: float = math.nan
    finish: float = math.nan
    prompt_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    queue_time: float = math.nan
    preemptions: int = 0
    tenant: str | None = None
    priority: int = 0
    status: str = "ok"  # ok | rejected (too long) | dropped (no endpoint / admission)

    @property
    def ttft(self) -> float:
        return self.first_token - self.arrival

    @property
    def e2e(self) -> float:
        return self.finish - self.arrival

    @property
    def tpot(self) -> float:
        if self.output_tokens > 1:
            return (self.finish - self.first_token) / (self.output_tokens - 1)
        return math.nan


@dataclass
class SimResult:
    records: list[RequestRecord]
    engines: list[EngineCore]
    duration: float
    load_samples: list[tuple[float, list[int]]] = field(default_factory=list)
    routed_blocks: int = 0
    pooled_hit_rate: float | None = None
