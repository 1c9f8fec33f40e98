"""What a workload is: requests with arrival times, token-id prompts and output lengths.

Prompts are token ids (the twin has no tokenizer on its hot path). Output token ids are a pure
function of the request id and position (:func:`output_tokens`), so a multi-turn follow-up's
prompt, which contains the previous answer, is built ahead of time and hits the engine's cache
on that answer exactly as a live conversation would. A follow-up (``parent`` set) arrives
``think_time`` seconds after its parent finishes; other requests arrive at ``arrival``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["VOCAB", "OutputTokens", "WorkloadRequest", "output_tokens"]

VOCAB = 128000
_STEP = 7919


def _base(request_id: int) -> int:
    return (request_id * 2654435761 + 97) % (VOCAB - 256)


def output_tokens(request_id: int, start: int, n: int) -> np.ndarray:
    """Token ids ``start .. start+n-1`` the twin's engine generates for ``request_id``."""
    pos = np.arange(start, start + n, dtype=np.int64)
    return (256 + (_base(request_id) + pos * _STEP) % (VOCAB - 256)).astype(np.int32)


def output_token_list(request_id: int, start: int, n: int) -> list[int]:
    """:func:`output_tokens` as a list (plain Python: faster for the few a block needs)."""
    if n > 32:
        return output_tokens(request_id, start, n).tolist()
    base = _base(request_id)
    m = VOCAB - 256
    return [256 + (base + p * _STEP) % m for p in range(start, start + n)]


class OutputTokens:
    """The engine's token source for a twin request (``next_token`` and bulk ``take``)."""

    __slots__ = ("pos", "request_id")

    def __init__(self, request_id: int) -> None:
        self.request_id = request_id
        self.pos = 0

    def __call__(self) -> int:
        t = 256 + (_base(self.request_id) + self.pos * _STEP) % (VOCAB - 256)
        self.pos += 1
        return t

    def take(self, n: int) -> list[int]:
        out = output_tokens(self.request_id, self.pos, n).tolist()
        self.pos += n
        return out


@dataclass(slots=True, eq=False)
class WorkloadRequest:
    id: int
    arrival: float
    prompt: np.ndarray
    max_tokens: int
    model: str = "model"
    tenant: str | None = None
    session: str | None = None
    priority: int = 0
    lora: str | None = None
    parent: int | None = None
    think_time: float = 0.0

    @property
    def prompt_tokens(self) -> int:
        return int(self.prompt.shape[0])
