"""Trace replay: Mooncake JSONL, Azure LLM inference CSV, and a generic JSONL.

All loaders stream requests in timestamp order, with ``time_scale`` (multiplies timestamps:
0.5 replays twice as fast) and ``sample`` (keep each request with that probability, seeded).

- **Mooncake** (``timestamp`` ms, ``input_length``, ``output_length``, ``hash_ids``): each
  512-token block id becomes 512 token ids, token ``p`` a hash of (id, p, seed), so equal ids
  give equal tokens, equal engine block hashes and real prefix reuse; the last block is cut to
  ``input_length``.
- **Azure** (``TIMESTAMP,ContextTokens,GeneratedTokens``): no prefix information: each prompt
  is fresh random tokens of the given length.
- **Generic JSONL**, one request per line::

      {"timestamp": 12.5,              # seconds (or "timestamp_ms")
       "prompt": "text ..."            # text, tokenised with the built-in tokenizer, or
       "prompt_tokens": 1200,          # a length (fresh tokens), or "token_ids": [...]
       "output_tokens": 200,           # output length (default 128)
       "prefix_group": "faq", "prefix_tokens": 800,   # optional shared prefix of a group
       "session": "s1", "tenant": "acme", "priority": 1, "model": "m"}
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import numpy as np

from rastos.errors import ConfigError
from rastos.workload.model import WorkloadRequest
from rastos.workload.synthetic import random_tokens

__all__ = ["MOONCAKE_BLOCK", "azure", "generic_jsonl", "load_trace", "mooncake"]

MOONCAKE_BLOCK = 512


def _keep(rng: np.random.Generator, sample: float) -> bool:
    return sample >= 1.0 or rng.random() < sample


_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser, vectorised: a well-spread 64-bit hash per element."""
    x = x ^ (x >> np.uint64(30))
    x = x * _M1
    x = x ^ (x >> np.uint64(27))
    x = x * _M2
    return x ^ (x >> np.uint64(31))


def _prompt_from_blocks(ids: list[int], n_tokens: int, seed: int) -> np.ndarray:
    """Token ids for a Mooncake prompt: token p of block id h is a hash of (h, p, seed)."""
    if not ids:
        return np.zeros(0, dtype=np.int32)
    with np.errstate(over="ignore"):
        h = np.repeat(np.asarray(ids, dtype=np.uint64), MOONCAKE_BLOCK)[:n_tokens]
        pos = np.tile(np.arange(MOONCAKE_BLOCK, dtype=np.uint64), len(ids))[:n_tokens]
        x = _mix(h * np.uint64(MOONCAKE_BLOCK) + pos + np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15))
    return (np.uint64(256) + x % np.uint64(127_744)).astype(np.int32)


def mooncake(path: str | Path, *, time_scale: float = 1.0, sample: float = 1.0, limit: int | None = None,
             model: str = "model", seed: int = 0) -> Iterator[WorkloadRequest]:  # fmt: skip
    rng = np.random.default_rng(seed)
    out = 0
    with open(path) as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                ts, n_in, n_out, ids = (
                    row["timestamp"],
                    int(row["input_length"]),
                    int(row["output_length"]),
                    row["hash_ids"],
                )
            except (ValueError, KeyError, TypeError) as exc:
                raise ConfigError(f"{path}:{lineno}: not a Mooncake record ({exc})") from None
            if not _keep(rng, sample):
                continue
            prompt = _prompt_from_blocks(ids, n_in, seed)
            yield WorkloadRequest(out, ts / 1000.0 * time_scale, prompt, max(1, n_out), model=model)
            out += 1
            if limit is not None and out >= limit:
                return


def azure(path: str | Path, *, time_scale: float = 1.0, sample: float = 1.0, limit: int | None = None,
          model: str = "model", seed: int = 0) -> Iterator[WorkloadRequest]:  # fmt: skip
    rng = np.random.default_rng(seed)
    t0: datetime | None = None
    out = 0
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            try:
                ts = datetime.fromisoformat(row["TIMESTAMP"].strip()[:26])
                n_in, n_out = int(row["ContextTokens"]), int(row["GeneratedTokens"])
            except (ValueError, KeyError, TypeError) as exc:
                raise ConfigError(f"{path}: not an Azure LLM trace row ({exc})") from None
            if t0 is None:
                t0 = ts
            if not _keep(rng, sample):
                continue
            yield WorkloadRequest(out, (ts - t0).total_seconds() * time_scale, random_tokens(rng, max(1, n_in)),
                                  max(1, n_out), model=model)  # fmt: skip
            out += 1
            if limit is not None and out >= limit:
                return


def generic_jsonl(path: str | Path, *, time_scale: float = 1.0, sample: float = 1.0, limit: int | None = None,
                  model: str = "model", seed: int = 0) -> Iterator[WorkloadRequest]:  # fmt: skip
    from rastos.engine.tokenizer import BuiltinTokenizer

    tok = BuiltinTokenizer()
    rng = np.random.default_rng(seed)
    prefixes: dict[str, np.ndarray] = {}
    out = 0
    with open(path) as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                ts = float(row["timestamp"]) if "timestamp" in row else float(row["timestamp_ms"]) / 1000.0
                if "token_ids" in row:
                    body = np.asarray(row["token_ids"], dtype=np.int32)
                elif "prompt" in row:
                    body = np.asarray(tok.encode(str(row["prompt"])), dtype=np.int32)
                else:
                    body = random_tokens(rng, int(row["prompt_tokens"]))
                group = row.get("prefix_group")
                if group is not None:
                    pre = prefixes.get(group)
                    if pre is None:
                        n_pre = int(row.get("prefix_tokens", 512))
                        gseed = int.from_bytes(
                            hashlib.blake2b(f"{group}:{seed}".encode(), digest_size=8).digest(), "big"
                        )
                        pre = prefixes[group] = np.random.default_rng(gseed).integers(
                            256, 128000, size=n_pre, dtype=np.int32
                        )
                    body = np.concatenate([pre, body])
                n_out = int(row.get("output_tokens", 128))
            except (ValueError, KeyError, TypeError) as exc:
                raise ConfigError(f"{path}:{lineno}: bad record ({exc}); see docs/workloads.md") from None
            if not _keep(rng, sample):
                continue
            yield WorkloadRequest(out, ts * time_scale, body, max(1, n_out), model=str(row.get("model", model)),
                                  tenant=row.get("tenant"), session=row.get("session"),
                                  priority=int(row.get("priority", 0)))  # fmt: skip
            out += 1
            if limit is not None and out >= limit:
                return


def load_trace(path: str | Path, fmt: str | None = None, **kw: object) -> Iterator[WorkloadRequest]:
    """A trace by format name, or guessed: ``.csv`` is Azure, a first line with ``hash_ids``
    is Mooncake, other ``.jsonl`` is generic."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"trace file {p} does not exist")
    if fmt is None:
        if p.suffix == ".csv":
            fmt = "azure"
        else:
            with open(p) as f:
                first = f.readline()
            fmt = "mooncake" if '"hash_ids"' in first else "jsonl"
    loaders = {"mooncake": mooncake, "azure": azure, "jsonl": generic_jsonl}
    if fmt not in loaders:
        raise ConfigError(f"unknown trace format {fmt!r}; use mooncake, azure or jsonl")
    return loaders[fmt](p, **kw)  # type: ignore[arg-type]
