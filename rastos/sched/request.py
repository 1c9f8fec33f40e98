"""What the scheduler knows about one request.

Built once per request by request analysis (``rastos.analysis``) from the body and headers;
the scheduling core only reads it. ``block_hashes`` are chained hashes of the prompt in
blocks of ``block_tokens`` estimated tokens, the key of approximate prefix matching: a list of
ints, or a uint64 array (the twin passes its hashes so; plugins only take ``len`` and slices).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

__all__ = ["SchedRequest"]


@dataclass(slots=True)
class SchedRequest:
    request_id: str
    model: str
    prompt_tokens: int = 0
    block_hashes: Sequence[int] = field(default_factory=list)
    block_tokens: int = 64
    lora: str | None = None
    tenant: str | None = None
    session_id: str | None = None
    priority: int = 0
    slo_ttft_ms: float | None = None
    slo_tpot_ms: float | None = None
    max_tokens: int | None = None
    stream: bool = False
    headers: Mapping[str, str] = field(default_factory=dict)
    arrival: float = 0.0
