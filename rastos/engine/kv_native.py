"""The KV pool's per-block loops, compiled with numba.

Why: the twin allocates, revives, evicts, registers and frees hundreds of blocks per request
on a hundred engines. In Python each block is a chain of interpreter steps and cache misses
(that was over half the twin's run time); compiled, a block costs nanoseconds and a call well
under a microsecond. The state is plain arrays, owned by :class:`~rastos.engine.kv_cache.KVCacheManager`:

- ``ref`` (int32) and ``key`` (int64, the block's hash as 64 bits; 0 = none) per block;
- the free queue as vLLM's doubly linked list (``nxt``/``prv`` over block ids, two sentinels
  ``HEAD = n`` and ``TAIL = n + 1``), so a revived block is unlinked in O(1) as in vLLM;
- a hash → block index: open addressing with linear probing over one int64 array ``tab``,
  a slot holding ``(high 32 bits of the key) << 32 | block`` (0: empty; block 0 is never
  registered), so a probe is one load and the key check one more (``key[b] == k``). Entries
  are never deleted: one whose block was evicted or reused no longer passes the key check and
  is skipped at no cost; past a quarter full (stale slots count) the index is rebuilt.
- ``meta``: ``[free blocks, index slots used]``.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["FREE", "USED", "alloc", "cache_blocks", "cache_one", "free_blocks", "lookup_prefix", "new_state", "queue_order"]

FREE, USED = 0, 1
_MULT = np.uint64(0x9E3779B97F4A7C15)


def new_state(n: int) -> dict[str, np.ndarray]:
    """Arrays for a pool of ``n`` blocks (block 0 never handed out), every block free, in order."""
    bits = max(6, int(8 * n - 1).bit_length())
    nxt = np.empty(n + 2, dtype=np.int32)
    prv = np.empty(n + 2, dtype=np.int32)
    order = np.arange(1, n, dtype=np.int32)
    chain = np.concatenate(([n], order, [n + 1])).astype(np.int32)  # HEAD, 1..n-1, TAIL
    nxt[chain[:-1]] = chain[1:]
    prv[chain[1:]] = chain[:-1]
    nxt[n + 1] = -1
    prv[n] = -1
    return {
        "ref": np.zeros(n, dtype=np.int32),
        "key": np.zeros(n, dtype=np.int64),
        "nxt": nxt,
        "prv": prv,
        "tab": np.zeros(1 << bits, dtype=np.int64),
        "meta": np.array([n - 1, 0], dtype=np.int64),
    }


@njit(cache=True, inline="always")
def _slot(k, shift):
    return np.int64((np.uint64(k) * _MULT) >> np.uint64(shift))


@njit(cache=True)
def _lookup(tab, key, k, shift, mask):
    tag = k >> 32
    s = _slot(k, shift)
    while True:
        t = tab[s]
        if t == 0:
            return -1
        if (t >> 32) == tag:
            b = t & 0xFFFFFFFF
            if key[b] == k:
                return b
        s = (s + 1) & mask


@njit(cache=True)
def _insert(tab, meta, k, b, shift, mask):
    s = _slot(k, shift)
    while tab[s] != 0:
        s = (s + 1) & mask
    tab[s] = ((k >> 32) << 32) | b
    meta[USED] += 1


@njit(cache=True)
def _rebuild(tab, key, meta, shift, mask):
    tab[:] = 0
    meta[USED] = 0
    for b in range(key.shape[0]):
        k = key[b]
        if k != 0:
            _insert(tab, meta, k, b, shift, mask)


@njit(cache=True)
def lookup_prefix(tab, key, qkeys, m, shift, out):
    """Write the blocks of the longest cached run ``qkeys[:m]`` into ``out``; return its length."""
    mask = tab.shape[0] - 1
    for i in range(m):
        b = _lookup(tab, key, qkeys[i], shift, mask)
        if b < 0:
            return i
        out[i] = b
    return m


@njit(cache=True)
def _unlink(nxt, prv, b):
    p = prv[b]
    q = nxt[b]
    nxt[p] = q
    prv[q] = p


@njit(cache=True)
def alloc(ref, key, nxt, prv, meta, hits, n_hit, need, blk, nblk, evicted):
    """Revive ``hits[:n_hit]`` and pop ``need`` fresh blocks into ``blk[nblk:]``.

    Returns the number of evicted keys written to ``evicted`` (-1 if the pool is short: then
    nothing changed). A revived block leaves the free queue; a fresh one comes off its front,
    its old content (if any) evicted.
    """
    revive = 0
    for i in range(n_hit):
        if ref[hits[i]] == 0:
            revive += 1
    if need + revive > meta[FREE]:
        return -1
    for i in range(n_hit):
        b = hits[i]
        if ref[b] == 0:
            _unlink(nxt, prv, b)
        ref[b] += 1
        blk[nblk + i] = b
    nblk += n_hit
    head = nxt.shape[0] - 2
    n_ev = 0
    for i in range(need):
        b = nxt[head]
        _unlink(nxt, prv, b)
        k = key[b]
        if k != 0:
            key[b] = 0
            if n_ev < evicted.shape[0]:
                evicted[n_ev] = k
            n_ev += 1
        ref[b] = 1
        blk[nblk + i] = b
    meta[FREE] -= need + revive
    return n_ev


@njit(cache=True)
def cache_one(tab, key, meta, b, k, shift):
    """Register block ``b`` as holding key ``k`` unless ``k`` is cached already (computed
    concurrently elsewhere: then the block stays unhashed); True if registered."""
    mask = tab.shape[0] - 1
    if _lookup(tab, key, k, shift, mask) >= 0:
        return False
    key[b] = k
    _insert(tab, meta, k, b, shift, mask)
    if meta[USED] * 4 > tab.shape[0]:
        _rebuild(tab, key, meta, shift, mask)
    return True


@njit(cache=True)
def cache_blocks(tab, key, meta, blk, qkeys, start, upto, shift, stored):
    """:func:`cache_one` for blocks ``[start, upto)`` (``blk[i]`` holds ``qkeys[i]``);
    ``stored[i - start]`` says which were registered."""
    for i in range(start, upto):
        stored[i - start] = cache_one(tab, key, meta, blk[i], qkeys[i], shift)


@njit(cache=True)
def free_blocks(ref, key, nxt, prv, meta, blk, nblk):
    """Release ``blk[:nblk]`` tail first: to the back of the queue, or its front if unhashed."""
    head = nxt.shape[0] - 2
    tail = head + 1
    freed = 0
    for i in range(nblk - 1, -1, -1):
        b = blk[i]
        r = ref[b] - 1
        ref[b] = r
        if r == 0:
            freed += 1
            if key[b] == 0:
                q = nxt[head]
                nxt[head] = b
                prv[b] = head
                nxt[b] = q
                prv[q] = b
            else:
                p = prv[tail]
                nxt[p] = b
                prv[b] = p
                nxt[b] = tail
                prv[tail] = b
    meta[FREE] += freed


@njit(cache=True)
def queue_order(nxt, out):
    """The free queue front to back into ``out``; returns its length."""
    head = nxt.shape[0] - 2
    tail = head + 1
    b = nxt[head]
    n = 0
    while b != tail:
        out[n] = b
        n += 1
        b = nxt[b]
    return n
