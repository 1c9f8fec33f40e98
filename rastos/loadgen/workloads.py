"""Built-in synthetic workloads for demos and live benchmarks.

``chat_sessions`` builds multi-tenant, multi-turn chat: each tenant has a long system prompt
that all its sessions share (the prefix routers should exploit), each session asks a few
questions in turn and sends the previous answers back, as chat clients do. Everything is
drawn from a seeded RNG over the engine's word list, so a run is repeatable.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp

from rastos.engine.textgen import word_list
from rastos.loadgen.client import RequestResult, send_request

__all__ = ["ChatSession", "chat_sessions", "run_sessions", "words"]


def words(rng: random.Random, n: int) -> str:
    wl = word_list()
    return " ".join(wl[rng.randrange(len(wl))] for _ in range(n))


@dataclass
class ChatSession:
    tenant: str
    session_id: str
    system: str
    questions: list[str]
    max_tokens: int
    start_delay: float = 0.0
    results: list[RequestResult] = field(default_factory=list)


def chat_sessions(
    *,
    tenants: int = 4,
    sessions_per_tenant: int = 8,
    turns: int = 3,
    system_words: int = 1500,
    question_words: int = 60,
    max_tokens: int = 120,
    arrival_span: float = 10.0,
    seed: int = 0,
) -> list[ChatSession]:
    rng = random.Random(seed)
    out = []
    for t in range(tenants):
        system = f"You are assistant {t} of tenant-{t}. " + words(rng, system_words)
        for s in range(sessions_per_tenant):
            out.append(
                ChatSession(
                    tenant=f"tenant-{t}",
                    session_id=f"t{t}-s{s}",
                    system=system,
                    questions=[words(rng, question_words) + "?" for _ in range(turns)],
                    max_tokens=max_tokens,
                    start_delay=rng.uniform(0, arrival_span),
                )
            )
    rng.shuffle(out)
    return out


async def run_sessions(
    base_url: str,
    model: str,
    sessions: list[ChatSession],
    *,
    think_time: float = 0.5,
    headers_for: Callable[[ChatSession], dict[str, str]] | None = None,
    on_result: Callable[[RequestResult], None] | None = None,
    timeout: float = 300.0,
) -> list[RequestResult]:
    """Play every session (turns in order, sessions concurrently); return all results."""
    url = base_url.rstrip("/") + "/v1/chat/completions"
    conn = aiohttp.TCPConnector(limit=0)
    results: list[RequestResult] = []

    async def play(sess: ChatSession, http: aiohttp.ClientSession) -> None:
        await asyncio.sleep(sess.start_delay)
        messages = [{"role": "system", "content": sess.system}]
        for q in sess.questions:
            messages.append({"role": "user", "content": q})
            body = {
                "model": model,
                "messages": messages,
                "max_tokens": sess.max_tokens,
                "stream": True,
                "stream_options": {"include_usage": True},
            }
            hdrs = headers_for(sess) if headers_for else {}
            r = await send_request(http, url, body, headers=hdrs, keep_text=True, timeout=timeout, tag=sess.tenant)
            sess.results.append(r)
            results.append(r)
            if on_result:
                on_result(r)
            if not r.ok:
                return
            messages.append({"role": "assistant", "content": r.text})
            await asyncio.sleep(think_time)

    async with aiohttp.ClientSession(connector=conn) as http:
        await asyncio.gather(*(play(s, http) for s in sessions))
    return results
