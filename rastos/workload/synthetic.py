"""Synthetic workloads: shared-prefix groups (inference-perf's ``shared_prefix``) and chat sessions.

``shared_prefix``: ``groups`` system prompts of ``system_prompt_len`` tokens, each with
``prompts_per_group`` questions of ``question_len`` tokens; every arrival asks one of them.
With ``multi_turn`` each (group, prompt) is a user whose conversation grows: the next request
carries the system prompt, every earlier question and answer, and a new question (history is
restarted before it would pass ``max_context``). Arrivals follow ``rate`` (a constant or a ramp)
with the chosen process. Groups map onto ``tenants``; ``priorities`` draws a priority per
request from ``{priority: weight}``.

``chat_sessions``: closed-loop conversations: sessions start as a Poisson process; each turn
after the first arrives ``think_time`` after the previous answer (a follow-up request).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

import numpy as np

from rastos.workload.arrivals import arrival_times
from rastos.workload.model import WorkloadRequest, output_tokens

__all__ = ["OutputLen", "chat_sessions", "random_tokens", "shared_prefix"]

OutputLen = int | tuple[int, int]


def random_tokens(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.integers(256, 128000, size=n, dtype=np.int32)


def _out_len(rng: np.random.Generator, spec: OutputLen) -> int:
    if isinstance(spec, int):
        return max(1, spec)
    lo, hi = spec
    return int(rng.integers(max(1, lo), max(lo, hi) + 1))


def _priority(rng: np.random.Generator, priorities: Mapping[int, float] | None) -> int:
    if not priorities:
        return 0
    keys = list(priorities)
    w = np.asarray([priorities[k] for k in keys], dtype=float)
    return int(keys[int(rng.choice(len(keys), p=w / w.sum()))])


def shared_prefix(
    *,
    groups: int = 32,
    prompts_per_group: int = 16,
    system_prompt_len: int = 4096,
    question_len: int = 256,
    output_len: OutputLen = 256,
    multi_turn: bool = False,
    max_context: int = 32_000,
    rate: float | Sequence[tuple[float, float]] = 10.0,
    process: str = "poisson",
    cv: float = 2.0,
    n: int | None = None,
    duration: float | None = None,
    tenants: int | None = None,
    priorities: Mapping[int, float] | None = None,
    model: str = "model",
    seed: int = 0,
) -> Iterator[WorkloadRequest]:
    if groups < 1 or prompts_per_group < 1:
        raise ValueError("groups and prompts_per_group must be at least 1")
    rng = np.random.default_rng(seed)
    systems = [random_tokens(rng, system_prompt_len) for _ in range(groups)]
    questions = [[random_tokens(rng, question_len) for _ in range(prompts_per_group)] for _ in range(groups)]
    history: dict[int, list[np.ndarray]] = {}
    users = groups * prompts_per_group
    for i, t in enumerate(arrival_times(rate, process=process, cv=cv, n=n, duration=duration, seed=seed + 1)):
        u = int(rng.integers(users))
        g, p = divmod(u, prompts_per_group)
        out = _out_len(rng, output_len)
        if multi_turn:
            parts = history.setdefault(u, [])
            q = random_tokens(rng, question_len) if parts else questions[g][p]
            prompt = np.concatenate([systems[g], *parts, q])
            if prompt.shape[0] + out > max_context:
                parts.clear()
                prompt = np.concatenate([systems[g], questions[g][p]])
                q = questions[g][p]
            parts.extend([q, output_tokens(i, 0, out)])
        else:
            prompt = np.concatenate([systems[g], questions[g][p]])
        yield WorkloadRequest(
            id=i,
            arrival=t,
            prompt=prompt,
            max_tokens=out,
            model=model,
            tenant=f"tenant-{g % tenants}" if tenants else f"group-{g}",
            session=f"user-{u}" if multi_turn else None,
            priority=_priority(rng, priorities),
        )


def chat_sessions(
    *,
    sessions: int = 200,
    turns: int = 4,
    tenants: int = 8,
    system_prompt_len: int = 2048,
    question_len: int = 128,
    output_len: OutputLen = (64, 256),
    think_time: float = 2.0,
    session_rate: float | Sequence[tuple[float, float]] = 2.0,
    n: int | None = None,
    model: str = "model",
    seed: int = 0,
) -> Iterator[WorkloadRequest]:
    """``n`` (if given) caps the total number of requests, and sets ``sessions`` to fit it."""
    if turns < 1 or tenants < 1:
        raise ValueError("turns and tenants must be at least 1")
    if n is not None:
        sessions = -(-n // turns)
    rng = np.random.default_rng(seed)
    systems = [random_tokens(rng, system_prompt_len) for _ in range(tenants)]
    rid = 0
    for s, t in enumerate(arrival_times(session_rate, n=sessions, seed=seed + 1)):
        tenant = int(rng.integers(tenants))
        parts: list[np.ndarray] = [systems[tenant]]
        parent: int | None = None
        for turn in range(turns):
            q = random_tokens(rng, question_len)
            out = _out_len(rng, output_len)
            prompt = np.concatenate([*parts, q])
            yield WorkloadRequest(
                id=rid,
                arrival=t if turn == 0 else 0.0,
                prompt=prompt,
                max_tokens=out,
                model=model,
                tenant=f"tenant-{tenant}",
                session=f"session-{s}",
                parent=parent,
                think_time=float(rng.exponential(think_time)) if turn else 0.0,
            )
            parts.extend([q, output_tokens(rid, 0, out)])
            parent = rid
            rid += 1
            if n is not None and rid >= n:
                return
