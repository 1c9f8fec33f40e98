"""Data producers: per-request facts other plugins read from the cycle state.

``approx-prefix-cache-producer`` owns the approximate prefix index: it looks the request's
block hashes up (writing, per endpoint, how many leading blocks it probably holds) and, as a
pre-request hook, records the blocks for the endpoint picked. With ``autoTune`` the index
capacity per endpoint follows the engine's KV size from ``cache_config_info``.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from rastos.sched.fleet import FleetState
from rastos.sched.framework import CycleState, DataProducer, PluginParams, PreRequest, SchedulingResult, register
from rastos.sched.prefix_index import PrefixIndex
from rastos.sched.request import SchedRequest

__all__ = ["PREFIX_KEY", "ApproxPrefixCacheProducer", "prefix_match"]

PREFIX_KEY = "prefix-match"


_KEYS: dict[str, str] = {}


def prefix_match(cycle: CycleState, producer: str, n: int) -> np.ndarray:
    """Leading blocks matched per endpoint (length ``n``), zeros if nothing was produced."""
    key = _KEYS.get(producer)
    if key is None:
        key = _KEYS[producer] = f"{PREFIX_KEY}/{producer}"
    m = cycle.get(key)
    if m is None:
        return np.zeros(n)
    return m


def prefix_index(cycle: CycleState, producer: str) -> PrefixIndex | None:
    """The producer's index itself (for rules that look at its size per endpoint)."""
    return cycle.get(f"index/{producer}")


class _ApproxParams(PluginParams):
    blockSizeTokens: int = Field(default=64, ge=1)
    maxPrefixBlocksToMatch: int = Field(default=2048, ge=1)
    lruCapacityPerServer: int = Field(default=31_250, ge=1)
    autoTune: bool = True


@register
class ApproxPrefixCacheProducer(DataProducer, PreRequest):
    """Approximate prefix matching against what this router sent where."""

    type_name = "approx-prefix-cache-producer"
    Params = _ApproxParams

    def __init__(self, name: str, params: PluginParams) -> None:
        super().__init__(name, params)
        p: _ApproxParams = params  # type: ignore[assignment]
        self.index = PrefixIndex(p.lruCapacityPerServer)
        self._tuned_version = -1
        self.key = f"{PREFIX_KEY}/{name}"
        self._index_key = f"index/{name}"

    @property
    def block_tokens(self) -> int:
        return self.params.blockSizeTokens  # type: ignore[attr-defined]

    def _autotune(self, fleet: FleetState) -> None:
        if self._tuned_version == fleet.cache_version:
            return
        self._tuned_version = fleet.cache_version
        kv_tokens = fleet.num_gpu_blocks * fleet.block_size
        bt = self.block_tokens
        for ep, tokens in enumerate(kv_tokens.tolist()):
            if tokens > 0:
                self.index.set_capacity(ep, int(tokens // bt))

    def produce(self, req: SchedRequest, fleet: FleetState, cands: np.ndarray, cycle: CycleState, now: float) -> None:
        if self.params.autoTune:  # type: ignore[attr-defined]
            self._autotune(fleet)
        size = len(fleet)
        matched = np.zeros(size)
        hashes = req.block_hashes[: self.params.maxPrefixBlocksToMatch]  # type: ignore[attr-defined]
        if len(hashes):
            nbytes = (size + 7) // 8
            for mask, n in self.index.match_runs(hashes, (1 << size) - 1):
                if mask.bit_count() <= 8:
                    while mask:  # few endpoints: plain bit walk
                        low = mask & -mask
                        matched[low.bit_length() - 1] = n
                        mask ^= low
                else:
                    bits = np.unpackbits(np.frombuffer(mask.to_bytes(nbytes, "little"), np.uint8), bitorder="little")
                    matched[bits[:size].astype(bool)] = n
        cycle[self.key] = matched
        cycle[self._index_key] = self.index

    def pre_request(self, req: SchedRequest, result: SchedulingResult, fleet: FleetState, now: float) -> None:
        hashes = req.block_hashes[: self.params.maxPrefixBlocksToMatch]  # type: ignore[attr-defined]
        if len(hashes):
            self.index.insert(result.endpoint, hashes)
