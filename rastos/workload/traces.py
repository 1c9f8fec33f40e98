"""Trace replay: Mooncake JSONL, Azure LLM inference CSV, and a generic JSONL.

All loaders yield requests in timestamp order (a file out of order is sorted, stably; prompts
are still synthesised lazily, one request at a time), with ``time_scale`` (multiplies
timestamps: 0.5 replays twice as fast), ``sample`` (keep each request with that probability,
seeded) and ``limit`` (stop after that many). Request ids are 0, 1, ... in replay order.

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
from collections.abc import Callable, Iterable, Iterator
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


def _in_order(rows: Iterable[tuple[float, object]]) -> list[tuple[float, object]]:
    """``(timestamp, row)`` pairs sorted by timestamp (stable), parsed up front: cheap rows,
    no prompts yet."""
    out = list(rows)
    if any(out[i][0] > out[i + 1][0] for i in range(len(out) - 1)):
        out.sort(key=lambda x: x[0])
    return out


def _replay(rows: Iterable[tuple[float, object]], make: Callable[[int, float, object], WorkloadRequest],
            *, time_scale: float, sample: float, limit: int | None, seed: int) -> Iterator[WorkloadRequest]:  # fmt: skip
    rng = np.random.default_rng(seed)
    n = 0
    for ts, row in _in_order(rows):
        if limit is not None and n >= limit:
            return
        if not _keep(rng, sample):
            continue
        yield make(n, ts * time_scale, row)
        n += 1


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
    def rows() -> Iterator[tuple[float, tuple[int, int, list[int]]]]:
        with open(path) as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                    rec = (int(row["input_length"]), int(row["output_length"]), list(row["hash_ids"]))
                    yield float(row["timestamp"]) / 1000.0, rec
                except (ValueError, KeyError, TypeError) as exc:
                    raise ConfigError(f"{path}:{lineno}: not a Mooncake record ({exc})") from None

    def make(i: int, t: float, rec: tuple[int, int, list[int]]) -> WorkloadRequest:  # type: ignore[override]
        n_in, n_out, ids = rec
        return WorkloadRequest(i, t, _prompt_from_blocks(ids, n_in, seed), max(1, n_out), model=model)

    return _replay(rows(), make, time_scale=time_scale, sample=sample, limit=limit, seed=seed)  # type: ignore[arg-type]


def azure(path: str | Path, *, time_scale: float = 1.0, sample: float = 1.0, limit: int | None = None,
          model: str = "model", seed: int = 0) -> Iterator[WorkloadRequest]:  # fmt: skip
    def rows() -> Iterator[tuple[float, tuple[int, int]]]:
        t0: datetime | None = None
        with open(path, newline="") as f:
            for lineno, row in enumerate(csv.DictReader(f), 2):
                try:
                    ts = datetime.fromisoformat(row["TIMESTAMP"].strip()[:26])
                    rec = (int(row["ContextTokens"]), int(row["GeneratedTokens"]))
                except (ValueError, KeyError, TypeError, AttributeError) as exc:
                    raise ConfigError(f"{path}:{lineno}: not an Azure LLM trace row ({exc})") from None
                if t0 is None:
                    t0 = ts
                yield (ts - t0).total_seconds(), rec

    rng = np.random.default_rng(seed + 1)

    def make(i: int, t: float, rec: tuple[int, int]) -> WorkloadRequest:  # type: ignore[override]
        n_in, n_out = rec
        return WorkloadRequest(i, t, random_tokens(rng, max(1, n_in)), max(1, n_out), model=model)

    reqs = _replay(rows(), make, time_scale=time_scale, sample=sample, limit=limit, seed=seed)  # type: ignore[arg-type]
    first: float | None = None
    for r in reqs:  # an unsorted file's earliest row may not be its first: start the clock at 0
        if first is None:
            first = r.arrival
        r.arrival -= first
        yield r


def generic_jsonl(path: str | Path, *, time_scale: float = 1.0, sample: float = 1.0, limit: int | None = None,
                  model: str = "model", seed: int = 0) -> Iterator[WorkloadRequest]:  # fmt: skip
    from rastos.engine.tokenizer import BuiltinTokenizer

    tok = BuiltinTokenizer()
    rng = np.random.default_rng(seed + 1)
    prefixes: dict[str, np.ndarray] = {}

    def rows() -> Iterator[tuple[float, tuple[int, dict]]]:
        with open(path) as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                    if not isinstance(row, dict):
                        raise TypeError("a record must be a JSON object")
                    ts = float(row["timestamp"]) if "timestamp" in row else float(row["timestamp_ms"]) / 1000.0
                except (ValueError, KeyError, TypeError) as exc:
                    raise ConfigError(f"{path}:{lineno}: bad record ({exc}); see docs/workloads.md") from None
                yield ts, (lineno, row)

    def make(i: int, t: float, rec: tuple[int, dict]) -> WorkloadRequest:  # type: ignore[override]
        lineno, row = rec
        try:
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
                    gseed = int.from_bytes(hashlib.blake2b(f"{group}:{seed}".encode(), digest_size=8).digest(), "big")
                    pre = prefixes[group] = np.random.default_rng(gseed).integers(256, 128000, size=n_pre,
                                                                                  dtype=np.int32)  # fmt: skip
                body = np.concatenate([pre, body])
            n_out = int(row.get("output_tokens", 128))
            priority = int(row.get("priority", 0))
        except (ValueError, KeyError, TypeError, OverflowError) as exc:
            raise ConfigError(f"{path}:{lineno}: bad record ({exc}); see docs/workloads.md") from None
        tenant, session = row.get("tenant"), row.get("session")
        return WorkloadRequest(i, t, body, max(1, n_out), model=str(row.get("model", model)),
                               tenant=None if tenant is None else str(tenant),
                               session=None if session is None else str(session), priority=priority)  # fmt: skip

    return _replay(rows(), make, time_scale=time_scale, sample=sample, limit=limit, seed=seed)  # type: ignore[arg-type]


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
