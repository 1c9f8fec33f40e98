"""One sequence inside the simulated engine, with the bookkeeping vLLM's scheduler keeps.

The request carries its tokens and block hashes (extended as output tokens complete blocks,
so multi-turn conversations hit the cache on the previous answer exactly as on vLLM), its
position in the KV cache and the timestamps the metrics need. Output token ids come from an
injected ``next_token`` callable: the HTTP server plugs in readable text, the twin plugs in
cheap seeded ids; the engine never knows which.
"""

from __future__ import annotations

import enum
import zlib
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from rastos.engine.hashing import BlockHash

__all__ = ["EngineRequest", "RequestStatus", "SeededTokens"]


class RequestStatus(enum.IntEnum):
    WAITING = 0
    RUNNING = 1
    PREEMPTED = 2
    FINISHED = 3


class SeededTokens:
    """A cheap deterministic token-id stream (the twin's default; no text attached)."""

    __slots__ = ("_state", "_vocab")

    def __init__(self, seed: int, vocab_size: int = 128000) -> None:
        self._state = (seed * 6364136223846793005 + 1442695040888963407) & 0xFFFFFFFFFFFFFFFF
        self._vocab = vocab_size

    def __call__(self) -> int:
        self._state = (self._state * 6364136223846793005 + 1442695040888963407) & 0xFFFFFFFFFFFFFFFF
        return 256 + (self._state >> 33) % (self._vocab - 256)


class EngineRequest:
    """A request as the engine schedules it.

    ``eos_at`` is the number of output tokens after which the model emits EOS (finish reason
    ``stop``); ``None`` means it never does (``ignore_eos``), and ``max_tokens`` ends it.
    ``priority`` follows vLLM: lower values are served first.
    """

    __slots__ = (
        "arrival_time",
        "blk",
        "block_hashes",
        "cache_salt",
        "eos_at",
        "finish_reason",
        "finished_time",
        "first_scheduled_time",
        "first_token_time",
        "hash_keys",
        "last_token_time",
        "lora_name",
        "max_tokens",
        "n_out",
        "num_blocks",
        "num_hash_keys",
        "next_token",
        "num_cached_blocks",
        "num_cached_tokens",
        "num_computed_tokens",
        "num_preemptions",
        "num_prompt_tokens",
        "num_scheduled",
        "output_token_ids",
        "priority",
        "prompt_token_ids",
        "request_id",
        "scheduled_time",
        "seq",
        "status",
        "token_fn",
        "user_data",
    )

    def __init__(
        self,
        request_id: str,
        prompt_token_ids: Sequence[int],
        max_tokens: int,
        *,
        eos_at: int | None = None,
        priority: int = 0,
        lora_name: str | None = None,
        cache_salt: str | None = None,
        next_token: Callable[[], int] | None = None,
        block_hashes: list[BlockHash] | None = None,
        arrival_time: float = 0.0,
        user_data: Any = None,
    ) -> None:
        if max_tokens < 1:
            raise ValueError("max_tokens must be at least 1")
        self.request_id = request_id
        self.prompt_token_ids = prompt_token_ids
        self.num_prompt_tokens = len(prompt_token_ids)
        # Output ids as a list (the server), or None with ``token_fn(start, n)`` producing
        # them on demand (the twin, where outputs are a pure function of the position).
        self.output_token_ids: list[int] | None = []
        self.n_out = 0
        self.token_fn: Callable[[int, int], list[int]] | None = None
        self.max_tokens = max_tokens
        self.eos_at = eos_at
        self.priority = priority
        self.lora_name = lora_name
        self.cache_salt = cache_salt
        self.next_token = next_token if next_token is not None else SeededTokens(zlib.crc32(request_id.encode()))
        self.user_data = user_data
        self.status = RequestStatus.WAITING
        self.num_computed_tokens = 0
        self.num_scheduled = 0
        self.blk: np.ndarray | None = None  # KV block ids, first num_blocks of them (int32)
        self.num_blocks = 0
        self.num_cached_blocks = 0
        # Hashes of full blocks; None means "engine computes them on arrival".
        self.block_hashes: list[BlockHash] | None = block_hashes
        self.hash_keys: np.ndarray | None = None  # their first num_hash_keys as the KV pool's keys
        self.num_hash_keys = 0
        self.num_cached_tokens = -1
        self.num_preemptions = 0
        self.arrival_time = arrival_time
        self.first_scheduled_time = -1.0
        self.scheduled_time = -1.0
        self.first_token_time = -1.0
        self.last_token_time = -1.0
        self.finished_time = -1.0
        self.finish_reason: str | None = None
        self.seq = 0

    @property
    def num_tokens(self) -> int:
        return self.num_prompt_tokens + self.n_out

    @property
    def blocks(self) -> list[int]:
        """The KV blocks held, in order (a copy)."""
        return [] if self.blk is None else self.blk[: self.num_blocks].tolist()

    @property
    def num_output_tokens(self) -> int:
        return self.n_out

    def outputs(self, start: int, end: int) -> list[int]:
        """Output token ids ``[start, end)``."""
        if self.output_token_ids is not None:
            return self.output_token_ids[start:end]
        assert self.token_fn is not None, "lazy outputs need a token_fn"
        return self.token_fn(start, end - start) if end > start else []

    @property
    def finished(self) -> bool:
        return self.status is RequestStatus.FINISHED

    def token_slice(self, start: int, end: int) -> list[int]:
        """Tokens ``[start, end)`` of prompt + output without building the whole list."""
        p = self.num_prompt_tokens
        if start >= p:
            return self.outputs(start - p, end - p)
        head = self.prompt_token_ids[start:end]
        head = head.tolist() if isinstance(head, np.ndarray) else list(head)
        return head if end <= p else head + self.outputs(0, end - p)

    def __repr__(self) -> str:
        return (
            f"EngineRequest({self.request_id!r}, prompt={self.num_prompt_tokens}, "
            f"out={self.n_out}/{self.max_tokens}, status={self.status.name})"
        )
