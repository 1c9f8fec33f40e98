"""The prefix index's loops, compiled with numba (see :mod:`rastos.sched.prefix_index`).

State (arrays owned by :class:`~rastos.sched.prefix_index.PrefixIndex`):

- rows, one per distinct block hash held anywhere: ``rkey`` (the hash as int64), ``rmask``
  (``[rows, words]`` uint64 bitmask of endpoints holding it), ``rhead`` (first node of the
  row's node list), free rows on the stack ``rfree``;
- a hash → row table, open addressing with linear probing over ``kslot`` (-1 empty, -2
  deleted, else a row); grown and rebuilt by the caller before it passes half full;
- nodes, one per (endpoint, hash) held: ``nrow``, ``nep``, ``nprev``/``nnext`` (the endpoint's
  LRU list, oldest first, from ``head[ep]`` to ``tail[ep]``), ``nrnext`` (next node of the
  same row: rows are held by few endpoints, so finding a row's node for an endpoint is a
  short walk); free nodes on the stack ``nfree``;
- ``size[ep]``/``cap[ep]`` and ``meta`` = [table slots used (deleted count), free rows, free nodes].
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["K_USED", "NFREE", "RFREE", "insert", "match", "rebuild_table", "remove", "trim"]

K_USED, RFREE, NFREE = 0, 1, 2
_MULT = np.uint64(0x9E3779B97F4A7C15)
_ONE = np.uint64(1)


@njit(cache=True, inline="always")
def _slot(k, mask):
    return np.int64((np.uint64(k) * _MULT) >> np.uint64(29)) & mask


@njit(cache=True)
def _kpos(kslot, rkey, k):
    """Slot holding ``k``'s row, or -1."""
    mask = kslot.shape[0] - 1
    s = _slot(k, mask)
    while True:
        r = kslot[s]
        if r == -1:
            return -1
        if r >= 0 and rkey[r] == k:
            return s
        s = (s + 1) & mask


@njit(cache=True)
def _kfind(kslot, rkey, k):
    s = _kpos(kslot, rkey, k)
    return kslot[s] if s >= 0 else -1


@njit(cache=True)
def _kinsert(kslot, meta, k, row):
    mask = kslot.shape[0] - 1
    s = _slot(k, mask)
    while kslot[s] >= 0:
        s = (s + 1) & mask
    if kslot[s] == -1:
        meta[K_USED] += 1
    kslot[s] = row


@njit(cache=True)
def _kdelete(kslot, rkey, k):
    s = _kpos(kslot, rkey, k)
    if s >= 0:
        kslot[s] = -2


@njit(cache=True)
def rebuild_table(kslot, rkey, ralive, meta):
    """Re-insert every live row into the (cleared) table ``kslot``."""
    kslot[:] = -1
    meta[K_USED] = 0
    for r in range(ralive.shape[0]):
        if ralive[r]:
            _kinsert(kslot, meta, rkey[r], r)


@njit(cache=True)
def match(kslot, rkey, rmask, keys, cand, out_mask, out_n):
    """The walk: ``(endpoints that stopped matching, blocks matched)`` runs into
    ``out_mask``/``out_n``; returns how many."""
    n = keys.shape[0]
    w = rmask.shape[1]
    r = _kfind(kslot, rkey, keys[0])
    if r < 0:
        return 0
    alive = rmask[r] & cand
    if not alive.any():
        return 0
    nxt = np.empty(w, dtype=np.uint64)
    nr = 0
    for i in range(1, n):
        r = _kfind(kslot, rkey, keys[i])
        same = True
        for j in range(w):
            x = alive[j] & rmask[r, j] if r >= 0 else np.uint64(0)
            nxt[j] = x
            if x != alive[j]:
                same = False
        if not same:
            any_left = False
            for j in range(w):
                out_mask[nr, j] = alive[j] & ~nxt[j]
                alive[j] = nxt[j]
                if nxt[j] != 0:
                    any_left = True
            out_n[nr] = i
            nr += 1
            if not any_left:
                return nr
    out_mask[nr] = alive
    out_n[nr] = n
    return nr + 1


@njit(cache=True)
def _unlink(nd, ep, nprev, nnext, head, tail):
    """Take node ``nd`` out of ``ep``'s LRU list."""
    p = nprev[nd]
    q = nnext[nd]
    if p >= 0:
        nnext[p] = q
    else:
        head[ep] = q
    if q >= 0:
        nprev[q] = p
    else:
        tail[ep] = p


@njit(cache=True)
def _node_of(r, ep, rhead, nep, nrnext):
    """``ep``'s node for row ``r``, or -1 (a row's list is as long as its holders: short)."""
    nd = rhead[r]
    while nd >= 0 and nep[nd] != ep:
        nd = nrnext[nd]
    return nd


@njit(cache=True)
def _drop_node(nd, rhead, rmask, nrow, nep, nprev, nnext, nrnext, nfree, head, tail, size, meta):
    """Unlink node ``nd`` from its endpoint's LRU and its row; return the row if it became
    empty (the caller frees it), else -1."""
    ep = nep[nd]
    _unlink(nd, ep, nprev, nnext, head, tail)
    size[ep] -= 1
    r = nrow[nd]
    x = rhead[r]
    if x == nd:
        rhead[r] = nrnext[nd]
    else:
        while nrnext[x] != nd:
            x = nrnext[x]
        nrnext[x] = nrnext[nd]
    rmask[r, ep >> 6] &= ~(_ONE << np.uint64(ep & 63))
    nfree[meta[NFREE]] = nd
    meta[NFREE] += 1
    return r if rhead[r] < 0 else -1


@njit(cache=True)
def _free_row(r, kslot, rkey, ralive, rfree, meta):
    _kdelete(kslot, rkey, rkey[r])
    ralive[r] = False
    rfree[meta[RFREE]] = r
    meta[RFREE] += 1


@njit(cache=True)
def trim(ep, kslot, rkey, rmask, rhead, ralive, rfree, nrow, nep, nprev, nnext, nrnext, nfree, head, tail, size,
         cap, meta):  # fmt: skip
    """Evict ``ep``'s least recently used hashes down to its capacity."""
    while size[ep] > cap[ep]:
        r = _drop_node(head[ep], rhead, rmask, nrow, nep, nprev, nnext, nrnext, nfree, head, tail, size, meta)
        if r >= 0:
            _free_row(r, kslot, rkey, ralive, rfree, meta)


@njit(cache=True)
def insert(ep, keys, kslot, rkey, rmask, rhead, ralive, rfree, nrow, nep, nprev, nnext, nrnext, nfree, head, tail,
           size, cap, meta):  # fmt: skip
    """``ep`` now holds ``keys`` (most recent last): touch or add each, then trim. The caller
    made room: free rows and nodes ≥ ``len(keys)``, table below half full after."""
    word = ep >> 6
    bit = _ONE << np.uint64(ep & 63)
    for i in range(keys.shape[0]):
        k = keys[i]
        r = _kfind(kslot, rkey, k)
        if r < 0:
            meta[RFREE] -= 1
            r = rfree[meta[RFREE]]
            rkey[r] = k
            rmask[r, :] = 0
            rhead[r] = -1
            ralive[r] = True
            _kinsert(kslot, meta, k, r)
        nd = _node_of(r, ep, rhead, nep, nrnext)
        if nd >= 0:
            if tail[ep] == nd:
                continue
            _unlink(nd, ep, nprev, nnext, head, tail)  # touched: to the back
        else:
            meta[NFREE] -= 1
            nd = nfree[meta[NFREE]]
            nrow[nd] = r
            nep[nd] = ep
            nrnext[nd] = rhead[r]
            rhead[r] = nd
            rmask[r, word] |= bit
            size[ep] += 1
        t = tail[ep]
        nprev[nd] = t
        nnext[nd] = -1
        if t >= 0:
            nnext[t] = nd
        else:
            head[ep] = nd
        tail[ep] = nd
    trim(ep, kslot, rkey, rmask, rhead, ralive, rfree, nrow, nep, nprev, nnext, nrnext, nfree, head, tail, size, cap,
         meta)  # fmt: skip


@njit(cache=True)
def remove(ep, keys, kslot, rkey, rmask, rhead, ralive, rfree, nrow, nep, nprev, nnext, nrnext, nfree, head, tail,
           size, meta):  # fmt: skip
    """Forget ``keys`` on ``ep`` (those it holds)."""
    for i in range(keys.shape[0]):
        r = _kfind(kslot, rkey, keys[i])
        if r < 0:
            continue
        nd = _node_of(r, ep, rhead, nep, nrnext)
        if nd < 0:
            continue
        if _drop_node(nd, rhead, rmask, nrow, nep, nprev, nnext, nrnext, nfree, head, tail, size, meta) >= 0:
            _free_row(r, kslot, rkey, ralive, rfree, meta)
