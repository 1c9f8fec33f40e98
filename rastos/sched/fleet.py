"""The fleet as the scheduler sees it: endpoints and their state, as arrays.

State is a struct of numpy arrays with one slot per endpoint, so a scorer over 1,000
endpoints is a handful of vector operations, not a Python loop. Writers: the gateway's data
layer (scraped engine metrics with their time, health), its request accounting (in-flight
requests and uncached prompt tokens, updated without scrape lag), or the twin. Readers: the
scheduling core, which never mutates it. ``snapshot`` is the live object itself: in one
asyncio loop a decision runs without interruption, so it sees a consistent state.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

__all__ = ["ROLES", "Endpoint", "FleetState"]

ROLES = ("both", "prefill", "decode")


@dataclass(eq=False, slots=True)
class Endpoint:
    """One model server (one ip:port; a data-parallel rank is its own endpoint)."""

    url: str
    name: str = ""
    models: frozenset[str] = frozenset()
    engine_type: str = "vllm"
    labels: Mapping[str, str] = field(default_factory=dict)
    role: str = "both"
    index: int = -1

    def __post_init__(self) -> None:
        if not self.name:
            self.name = self.url.split("://", 1)[-1].rstrip("/")

    @property
    def address(self) -> str:
        """``host:port``, what ext_proc's destination header carries."""
        return self.name


class FleetState:
    """Per-endpoint state arrays, grown as endpoints are added."""

    _ARRAYS: tuple[tuple[str, type, float], ...] = (
        ("queue", np.float64, 0.0),
        ("running", np.float64, 0.0),
        ("kv_usage", np.float64, 0.0),
        ("scraped_at", np.float64, -np.inf),
        ("inflight_reqs", np.float64, 0.0),
        ("inflight_tokens", np.float64, 0.0),
        ("inflight_prompt_tokens", np.float64, 0.0),
        ("healthy", np.bool_, True),
        ("block_size", np.float64, 0.0),
        ("num_gpu_blocks", np.float64, 0.0),
        ("max_loras", np.float64, 0.0),
    )

    def __init__(self, endpoints: Iterable[Endpoint] = ()) -> None:
        self.endpoints: list[Endpoint] = []
        self.queue = np.zeros(0)
        self.running = np.zeros(0)
        self.kv_usage = np.zeros(0)
        self.scraped_at = np.zeros(0)
        self.inflight_reqs = np.zeros(0)
        self.inflight_tokens = np.zeros(0)
        self.inflight_prompt_tokens = np.zeros(0)
        self.healthy = np.zeros(0, dtype=bool)
        self.block_size = np.zeros(0)
        self.num_gpu_blocks = np.zeros(0)
        self.max_loras = np.zeros(0)
        self.lora_running: list[frozenset[str]] = []
        self.lora_waiting: list[frozenset[str]] = []
        self.version = 0
        self.cache_version = 0  # bumped when an endpoint's KV size (block size, blocks) changes
        self._by_model: dict[str, np.ndarray] = {}
        self._models: frozenset[str] | None = None
        for ep in endpoints:
            self.add(ep)

    def __len__(self) -> int:
        return len(self.endpoints)

    def add(self, ep: Endpoint) -> Endpoint:
        ep.index = len(self.endpoints)
        self.endpoints.append(ep)
        for name, dtype, init in self._ARRAYS:
            arr = getattr(self, name)
            setattr(self, name, np.append(arr, np.array([init], dtype=dtype)))
        self.lora_running.append(frozenset())
        self.lora_waiting.append(frozenset())
        self.cache_version += 1
        self._changed()
        return ep

    def set_cache_info(self, index: int, block_size: float, num_gpu_blocks: float) -> None:
        """Record an endpoint's KV geometry (``cache_config_info``); consumers resize on change."""
        if self.block_size[index] != block_size or self.num_gpu_blocks[index] != num_gpu_blocks:
            self.block_size[index] = block_size
            self.num_gpu_blocks[index] = num_gpu_blocks
            self.cache_version += 1

    def set_models(self, index: int, models: Iterable[str]) -> None:
        self.endpoints[index].models = frozenset(models)
        self._changed()

    def _changed(self) -> None:
        self.version += 1
        self._by_model.clear()
        self._models = None

    def serving(self, model: str) -> np.ndarray:
        """Indices of endpoints that serve ``model`` (a base model or a LoRA adapter)."""
        idx = self._by_model.get(model)
        if idx is None:
            idx = np.array([ep.index for ep in self.endpoints if model in ep.models], dtype=np.int64)
            self._by_model[model] = idx
        return idx

    def known_models(self) -> frozenset[str]:
        if self._models is None:
            self._models = frozenset().union(*(ep.models for ep in self.endpoints))
        return self._models

    def stale(self, now: float, threshold: float) -> np.ndarray:
        """Endpoints whose scraped metrics are older than ``threshold`` seconds."""
        return (now - self.scraped_at) > threshold
