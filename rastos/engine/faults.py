"""Fault injection for reliability tests of whatever sits in front of the engine.

Faults are drawn per request from a seeded RNG (so a test run is repeatable) or forced per
request with the ``x-rastos-fault`` header, and can be changed while the engine runs through
``POST /admin/faults`` (a partial JSON object; ``GET`` shows the current set):

- ``error_rate`` / ``error_kinds``: answer at once with an error: ``server_error`` (500),
  ``rate_limit`` (429) or ``context_length`` (400 with vLLM's message);
- ``hang_rate``: accept the request and never answer;
- ``disconnect_rate`` / ``disconnect_after_tokens``: cut a stream's connection mid-way;
- ``crash_after_requests``: the process exits (status 1) when that many requests have arrived;
- ``unready``: ``/health`` answers 503 (the engine still serves);
- ``slowdown``: every step takes this many times longer (a degraded GPU).
A slow start is the ``--startup-delay`` flag: the port opens only after that many seconds.
"""

from __future__ import annotations

import random
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["FAULT_HEADER", "FaultConfig", "FaultInjector", "FaultKind"]

FAULT_HEADER = "x-rastos-fault"
FaultKind = Literal["server_error", "rate_limit", "context_length", "hang", "disconnect", "crash"]
_FORCEABLE = {"server_error", "rate_limit", "context_length", "hang", "disconnect", "crash"}


class FaultConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    error_rate: float = Field(default=0.0, ge=0, le=1)
    error_kinds: list[Literal["server_error", "rate_limit", "context_length"]] = Field(
        default_factory=lambda: ["server_error"], min_length=1
    )
    hang_rate: float = Field(default=0.0, ge=0, le=1)
    disconnect_rate: float = Field(default=0.0, ge=0, le=1)
    disconnect_after_tokens: int = Field(default=4, ge=0)
    crash_after_requests: int | None = Field(default=None, ge=0)
    unready: bool = False
    slowdown: float = Field(default=1.0, gt=0)


class FaultInjector:
    """Decides, per arriving request, which fault (if any) it meets."""

    def __init__(self, config: FaultConfig | None = None, seed: int = 0) -> None:
        self.config = config or FaultConfig()
        self._rng = random.Random(seed ^ 0x5EED)
        self.requests_seen = 0

    def update(self, patch: dict) -> FaultConfig:
        """Apply a partial update; raises pydantic's ValidationError on bad values."""
        merged = {**self.config.model_dump(), **patch}
        self.config = FaultConfig.model_validate(merged)
        return self.config

    def decide(self, forced: str | None) -> str | None:
        """The fault for the next request, or None. Counts the request."""
        self.requests_seen += 1
        c = self.config
        if c.crash_after_requests is not None and self.requests_seen > c.crash_after_requests:
            return "crash"
        if forced:
            if forced not in _FORCEABLE:
                return None
            return forced
        r = self._rng.random
        if c.error_rate and r() < c.error_rate:
            return self._rng.choice(c.error_kinds)
        if c.hang_rate and r() < c.hang_rate:
            return "hang"
        if c.disconnect_rate and r() < c.disconnect_rate:
            return "disconnect"
        return None
