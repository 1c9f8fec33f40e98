"""poly64: a chained 64-bit block hash computed for a whole prompt in one compiled pass.

Why: the digital twin hashes every prompt of up to millions of requests, hundreds of 16-token
blocks each; a per-block hash call (xxh3) costs about 0.3 µs of interpreter overhead a block,
which dominated a twin run. poly64 keeps the property the prefix cache needs (a block's hash
fingerprints the whole prefix up to it) with a chain that is linear::

    h_i = h_{i-1} · P + c_i   (mod 2^64),   c_i = mix(Σ_k t_{i,k} · R_k + x_i)

where ``t_{i,k}`` are block ``i``'s token ids, ``R_k`` fixed odd constants, ``x_i`` the digest
of the block's extra keys (LoRA name, cache salt) and ``mix`` splitmix64's finaliser, so each
``c_i`` is a pseudo-random digest of its block. A prompt is hashed by one numba-compiled loop
over its tokens (a few ns a token; the numpy form, a uint64 matmul plus a ``cumsum`` of the
unrolled chain, took about three times as long). Equality is all the twin asks of a hash; this is not vLLM's hash, so a sim
engine that publishes KV events keeps ``sha256``/``sha256_cbor``.
"""

from __future__ import annotations

from collections.abc import Sequence
from operator import mul

import numpy as np
import xxhash
from numba import njit

__all__ = ["chain_hashes", "hash_one", "key_digest", "none_hash", "prefix_hashes"]

_M = (1 << 64) - 1
_P = 0x9E3779B97F4A7C15 | 1  # odd multiplier (golden ratio)
_U64 = np.uint64


def _splitmix(z: int) -> int:
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9 & _M
    z = (z ^ (z >> 27)) * 0x94D049BB133111EB & _M
    return z ^ (z >> 31)


class _Tables:
    """Per-block-size token weights (array and list)."""

    def __init__(self) -> None:
        self.weights: dict[int, tuple[np.ndarray, list[int]]] = {}

    def weight(self, bs: int) -> tuple[np.ndarray, list[int]]:
        w = self.weights.get(bs)
        if w is None:
            ints = [_splitmix((bs << 32) + k + 1) | 1 for k in range(bs)]
            w = self.weights[bs] = (np.asarray(ints, dtype=_U64), ints)
        return w


_T = _Tables()


def none_hash(seed: str) -> int:
    """The parent of block 0 for an engine (and fleet) seeded with ``seed``."""
    return xxhash.xxh3_64_intdigest(b"poly64:" + seed.encode())


def key_digest(extra: tuple | None) -> int:
    """Digest of a block's extra keys (0 when there are none)."""
    return 0 if extra is None else xxhash.xxh3_64_intdigest(repr(extra).encode())


def chain_hashes(
    tokens: np.ndarray | Sequence[int], block_size: int, parent: int, extra: int = 0, first_extra: int = 0
) -> list[int]:
    """Hashes of every full block of ``tokens``, chained after ``parent``.

    ``extra`` is added to every block's digest (the LoRA name), ``first_extra`` to the first
    block's only (the cache salt on block 0).
    """
    return chain_hashes_array(tokens, block_size, parent, extra, first_extra).tolist()


def chain_hashes_array(
    tokens: np.ndarray | Sequence[int], block_size: int, parent: int, extra: int = 0, first_extra: int = 0
) -> np.ndarray:
    """:func:`chain_hashes` as a uint64 array (the twin keeps it so: no list of ints)."""
    t = np.asarray(tokens)
    n = t.shape[0] // block_size
    out = np.empty(n, dtype=_U64)
    if n:
        w, _ = _T.weight(block_size)
        _chain(t, block_size, w, _U64(parent & _M), _U64(extra & _M), _U64(first_extra & _M), out)
    return out


@njit(cache=True)
def _chain(t, bs, w, parent, extra, first_extra, out):  # noqa: ANN001
    # One pass, compiled: the sequential form h_i = h_{i-1}·P + c_i of the chain.
    p = _U64(_P)
    m1 = _U64(0xBF58476D1CE4E5B9)
    m2 = _U64(0x94D049BB133111EB)
    h = parent
    for i in range(out.shape[0]):
        z = extra
        if i == 0:
            z += first_extra
        base = i * bs
        for k in range(bs):
            z += _U64(t[base + k]) * w[k]
        z ^= z >> _U64(30)
        z *= m1
        z ^= z >> _U64(27)
        z *= m2
        z ^= z >> _U64(31)
        h = h * p + z
        out[i] = h


def hash_one(parent: int, tokens: Sequence[int], extra: int = 0) -> int:
    """One block's hash after ``parent`` (scalar; equal to :func:`chain_hashes` of that block)."""
    _, w = _T.weight(len(tokens))
    c = _splitmix((sum(map(mul, map(int, tokens), w)) + extra) & _M)
    return (parent * _P + c) & _M


def prefix_hashes(tokens: np.ndarray, block_tokens: int, max_blocks: int, seed: int = 0) -> list[int]:
    """The router's view: chained hashes of the first ``max_blocks`` full blocks of a prompt."""
    return chain_hashes(tokens[: block_tokens * max_blocks], block_tokens, seed)
