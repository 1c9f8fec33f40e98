"""Compile rastOS' numba kernels ahead of first use (``python -m rastos.native``).

The KV pool (``rastos.engine.kv_native``), the prefix index (``rastos.sched.prefix_native``)
and the twin's ``poly64`` hash are numba-compiled and cached on disk (``cache=True``). Each
process would compile on its first use (several seconds on a cold cache, more when a demo
starts several engines at once); ``make install`` runs this once so none of them waits.
"""

from __future__ import annotations

import time

__all__ = ["warm"]


def warm() -> float:
    """Compile (or load) every kernel; returns the seconds it took."""
    t0 = time.perf_counter()
    from rastos.engine import kv_cache, polyhash
    from rastos.sched import prefix_index

    kv_cache.KVCacheManager(4, 16)
    prefix_index.PrefixIndex(1)
    polyhash.chain_hashes_array(list(range(32)), 16, 1)
    return time.perf_counter() - t0


if __name__ == "__main__":
    print(f"numba kernels ready in {warm():.1f} s")
