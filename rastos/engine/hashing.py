"""Chained block hashes for the prefix cache, as vLLM v1 computes them.

Each full block of ``block_size`` tokens is hashed together with its parent's hash and its
extra keys, so a hash fingerprints the whole prefix up to and including its block::

    h_i = hash_fn((h_{i-1} or NONE_HASH, tuple(tokens_i), extra_keys_i))

``sha256`` (pickle + SHA-256, vLLM's default) and ``sha256_cbor`` (canonical CBOR + SHA-256,
reproducible across languages, what llm-d's precise scorer needs) produce the very hashes a
real vLLM produces for the same tokens and seed. ``xxh3_64`` is rastos' own fast hash for the
digital twin, where millions of requests are hashed and only equality matters: xxh3-64 of the
block's token ids as little-endian int32 bytes, seeded with the parent hash (extra keys folded
into the seed); deterministic across processes, about 0.2 µs a block. ``builtin`` is an alias.
``poly64`` (:mod:`rastos.engine.polyhash`) is the twin's default: a chained hash numpy computes
for a whole prompt in one pass, about 20x cheaper per block again.

``NONE_HASH`` is ``hash_fn(PYTHONHASHSEED)`` when that variable is set, else
``hash_fn("vllm-none-hash")`` (vLLM ≥ PR #51875), so every process of a fleet agrees.
Extra keys follow vLLM: the LoRA name on every block, ``cache_salt`` on the first block only.
On the wire (KV events) a hash is reported as its low 64 bits, unsigned.
"""

from __future__ import annotations

import array
import hashlib
import os
import pickle
from collections.abc import Callable, Sequence
from typing import Any

import cbor2
import numpy as np
import xxhash

from rastos.engine import polyhash

__all__ = [
    "HASH_ALGOS",
    "BlockHash",
    "BlockHasher",
    "wire_hash",
]

BlockHash = bytes | int
_MASK64 = (1 << 64) - 1


def _sha256(obj: Any) -> bytes:
    return hashlib.sha256(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)).digest()


def _sha256_cbor(obj: Any) -> bytes:
    return hashlib.sha256(cbor2.dumps(obj, canonical=True)).digest()


_xxh = xxhash.xxh3_64_intdigest


def _xxh3(obj: Any) -> int:
    """The generic form ``(parent, tokens, extra)`` (used for NONE_HASH and odd callers)."""
    parent, tokens, extra = obj if isinstance(obj, tuple) and len(obj) == 3 else (0, (), obj)
    return _xxh(_token_bytes(tokens), _seed(parent, extra))


def _token_bytes(tokens: Any) -> bytes:
    if isinstance(tokens, np.ndarray):
        return tokens.astype("<i4", copy=False).tobytes()
    if isinstance(tokens, (bytes, str)):
        return tokens.encode() if isinstance(tokens, str) else tokens
    return array.array("i", tokens).tobytes()


def _seed(parent: Any, extra: Any) -> int:
    seed = (parent if isinstance(parent, int) else _xxh(repr(parent).encode())) & _MASK64
    if extra is not None:
        seed ^= _xxh(repr(extra).encode())
    return seed


def _poly64(obj: Any) -> int:
    """The generic form ``(parent, tokens, extra)`` of poly64."""
    parent, tokens, extra = obj if isinstance(obj, tuple) and len(obj) == 3 else (0, (), obj)
    if not isinstance(parent, int):
        parent = _xxh(repr(parent).encode())
    return polyhash.hash_one(parent, tokens, polyhash.key_digest(extra))


HASH_ALGOS: dict[str, Callable[[Any], BlockHash]] = {
    "sha256": _sha256,
    "sha256_cbor": _sha256_cbor,
    "xxh3_64": _xxh3,
    "builtin": _xxh3,
    "poly64": _poly64,
}


def wire_hash(h: BlockHash) -> int:
    """The value vLLM puts in KV events (``VLLM_KV_EVENTS_USE_INT_BLOCK_HASHES=1``)."""
    if isinstance(h, bytes):
        return int.from_bytes(h, "big") & _MASK64
    return h & _MASK64


class BlockHasher:
    """Hashes token blocks of one engine (one algorithm, one seed, one block size)."""

    __slots__ = ("_fn", "algo", "block_size", "fast", "none_hash", "poly")

    def __init__(self, algo: str = "sha256", block_size: int = 16, seed: str | None = None) -> None:
        if algo not in HASH_ALGOS:
            raise ValueError(f"unknown prefix-caching hash algorithm {algo!r}; choose from {sorted(HASH_ALGOS)}")
        self.algo = algo
        self.block_size = block_size
        self._fn = HASH_ALGOS[algo]
        if seed is None:
            seed = os.environ.get("PYTHONHASHSEED", "vllm-none-hash")
        self.fast = algo in ("xxh3_64", "builtin")
        self.poly = algo == "poly64"
        if self.poly:
            self.none_hash: BlockHash = polyhash.none_hash(seed)
        elif self.fast:
            self.none_hash: BlockHash = _xxh(seed.encode())
        else:
            self.none_hash = self._fn(seed)

    def extra_keys(self, block_index: int, lora_name: str | None, cache_salt: str | None) -> tuple | None:
        """vLLM's per-block extra keys: LoRA name on every block, cache salt on block 0."""
        keys: list[Any] = []
        if lora_name:
            keys.append(lora_name)
        if cache_salt and block_index == 0:
            keys.append(cache_salt)
        if not keys:
            return None
        return tuple(keys)

    def hash_one(self, parent: BlockHash | None, tokens: Sequence[int], extra: tuple | None) -> BlockHash:
        """Hash of one full block after ``parent`` (the per-token hot path of decoding)."""
        p = self.none_hash if parent is None else parent
        if self.poly:
            return polyhash.hash_one(p, tokens, 0 if extra is None else polyhash.key_digest(extra))  # type: ignore[arg-type]
        if self.fast:
            return _xxh(_token_bytes(tokens), _seed(p, extra))
        return self._fn((p, tuple(tokens), extra))

    def hash_blocks_array(self, token_ids: np.ndarray, lora_name: str | None = None) -> np.ndarray | None:
        """:meth:`hash_blocks` from block 0 (no cache salt) as a uint64 array, for poly64
        (the twin's hash); None for the other algorithms."""
        if not self.poly:
            return None
        lora = polyhash.key_digest((lora_name,)) if lora_name else 0
        return polyhash.chain_hashes_array(token_ids, self.block_size, self.none_hash, lora)  # type: ignore[arg-type]

    def hash_blocks(
        self,
        token_ids: Sequence[int],
        start_block: int,
        parent: BlockHash | None,
        lora_name: str | None = None,
        cache_salt: str | None = None,
    ) -> list[BlockHash]:
        """Hashes of the full blocks of ``token_ids`` from block ``start_block`` on.

        ``parent`` is the hash of block ``start_block - 1`` (None for block 0), so a caller
        extends a request's hash list incrementally as its tokens grow.
        """
        bs = self.block_size
        fn = self._fn
        prev = self.none_hash if parent is None else parent
        out: list[BlockHash] = []
        n_full = len(token_ids) // bs
        plain = not lora_name and not cache_salt
        if self.poly:
            if start_block >= n_full:
                return out
            lora = polyhash.key_digest((lora_name,)) if lora_name else 0
            first = 0
            if cache_salt and start_block == 0:  # block 0's keys: (lora, salt) or (salt,)
                keys = (lora_name, cache_salt) if lora_name else (cache_salt,)
                first = (polyhash.key_digest(keys) - lora) & _MASK64
            if n_full - start_block > 4:
                toks = token_ids[start_block * bs : n_full * bs]
                return polyhash.chain_hashes(toks, bs, prev, lora, first)  # type: ignore[arg-type]
            one = polyhash.hash_one  # a few blocks (decode): numpy's per-call overhead would dominate
            for i in range(start_block, n_full):
                prev = one(prev, token_ids[i * bs : (i + 1) * bs], lora + first if i == 0 else lora)  # type: ignore[arg-type]
                out.append(prev)
            return out
        if self.fast:
            data = _token_bytes(token_ids)
            step = bs * 4
            for i in range(start_block, n_full):
                extra = None if plain else self.extra_keys(i, lora_name, cache_salt)
                prev = _xxh(data[i * step : (i + 1) * step], prev if extra is None else _seed(prev, extra))
                out.append(prev)
            return out
        for i in range(start_block, n_full):
            extra = None if plain else self.extra_keys(i, lora_name, cache_salt)
            prev = fn((prev, tuple(token_ids[i * bs : (i + 1) * bs]), extra))
            out.append(prev)
        return out
