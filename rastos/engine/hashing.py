"""Chained block hashes for the prefix cache, as vLLM v1 computes them.

Each full block of ``block_size`` tokens is hashed together with its parent's hash and its
extra keys, so a hash fingerprints the whole prefix up to and including its block::

    h_i = hash_fn((h_{i-1} or NONE_HASH, tuple(tokens_i), extra_keys_i))

``sha256`` (pickle + SHA-256, vLLM's default) and ``sha256_cbor`` (canonical CBOR + SHA-256,
reproducible across languages, what llm-d's precise scorer needs) produce the very hashes a
real vLLM produces for the same tokens and seed. ``builtin`` is a fast 64-bit integer hash
for the digital twin, where millions of requests are hashed and only equality matters.

``NONE_HASH`` is ``hash_fn(PYTHONHASHSEED)`` when that variable is set, else
``hash_fn("vllm-none-hash")`` (vLLM ≥ PR #51875), so every process of a fleet agrees.
Extra keys follow vLLM: the LoRA name on every block, ``cache_salt`` on the first block only.
On the wire (KV events) a hash is reported as its low 64 bits, unsigned.
"""

from __future__ import annotations

import hashlib
import os
import pickle
from collections.abc import Callable, Sequence
from typing import Any

import cbor2

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


def _builtin(obj: Any) -> int:
    # Python's hash of a tuple of ints is deterministic across processes; strings are not,
    # so the twin's callers pass only ints (see BlockHasher._extra_int).
    return hash(obj) & _MASK64


HASH_ALGOS: dict[str, Callable[[Any], BlockHash]] = {
    "sha256": _sha256,
    "sha256_cbor": _sha256_cbor,
    "builtin": _builtin,
}


def wire_hash(h: BlockHash) -> int:
    """The value vLLM puts in KV events (``VLLM_KV_EVENTS_USE_INT_BLOCK_HASHES=1``)."""
    if isinstance(h, bytes):
        return int.from_bytes(h, "big") & _MASK64
    return h & _MASK64


class BlockHasher:
    """Hashes token blocks of one engine (one algorithm, one seed, one block size)."""

    __slots__ = ("_fn", "algo", "block_size", "none_hash")

    def __init__(self, algo: str = "sha256", block_size: int = 16, seed: str | None = None) -> None:
        if algo not in HASH_ALGOS:
            raise ValueError(f"unknown prefix-caching hash algorithm {algo!r}; choose from {sorted(HASH_ALGOS)}")
        self.algo = algo
        self.block_size = block_size
        self._fn = HASH_ALGOS[algo]
        if seed is None:
            seed = os.environ.get("PYTHONHASHSEED", "vllm-none-hash")
        if algo == "builtin":
            self.none_hash: BlockHash = int.from_bytes(hashlib.sha256(seed.encode()).digest()[:8], "big")
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
        if self.algo == "builtin":
            return tuple(self._extra_int(k) for k in keys)
        return tuple(keys)

    @staticmethod
    def _extra_int(key: str) -> int:
        return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big")

    def hash_one(self, parent: BlockHash | None, tokens: Sequence[int], extra: tuple | None) -> BlockHash:
        """Hash of one full block after ``parent`` (the per-token hot path of decoding)."""
        return self._fn((self.none_hash if parent is None else parent, tuple(tokens), extra))

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
        for i in range(start_block, n_full):
            extra = None if plain else self.extra_keys(i, lora_name, cache_salt)
            prev = fn((prev, tuple(token_ids[i * bs : (i + 1) * bs]), extra))
            out.append(prev)
        return out
