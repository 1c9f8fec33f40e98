"""A measuring OpenAI client: sends one request, records what a user would time.

TTFT is taken at the first SSE chunk that carries generated text (or at the response for a
non-streaming request); inter-token gaps between successive content chunks; usage comes from
the server (``stream_options.include_usage``). Failures are recorded, never raised, so a load
run always finishes with a full account of every request it sent.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

__all__ = ["RequestResult", "send_request"]


@dataclass(slots=True)
class RequestResult:
    ok: bool
    status: int = 0
    error: str | None = None
    start: float = 0.0
    ttft: float = float("nan")
    latency: float = float("nan")
    itls: list[float] = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    endpoint: str | None = None
    tag: Any = None
    text: str = ""

    @property
    def tpot(self) -> float:
        if self.completion_tokens > 1 and self.latency == self.latency:
            return (self.latency - self.ttft) / (self.completion_tokens - 1)
        return float("nan")


def _usage(res: RequestResult, u: dict[str, Any] | None) -> None:
    if not u:
        return
    res.prompt_tokens = int(u.get("prompt_tokens") or 0)
    res.completion_tokens = int(u.get("completion_tokens") or 0)
    details = u.get("prompt_tokens_details") or {}
    res.cached_tokens = int(details.get("cached_tokens") or 0)


async def send_request(
    session: aiohttp.ClientSession,
    url: str,
    body: dict[str, Any],
    *,
    headers: dict[str, str] | None = None,
    timeout: float = 600.0,
    keep_text: bool = False,
    tag: Any = None,
) -> RequestResult:
    """POST ``body`` to ``url`` (a full ``.../v1/chat/completions`` or ``.../v1/completions``)."""
    stream = bool(body.get("stream"))
    chat = url.endswith("chat/completions")
    res = RequestResult(ok=False, tag=tag)
    t0 = time.perf_counter()
    res.start = t0
    parts: list[str] = []
    try:
        async with session.post(
            url, data=orjson.dumps(body), headers={"content-type": "application/json", **(headers or {})},
            timeout=aiohttp.ClientTimeout(total=timeout),
        ) as resp:  # fmt: skip
            res.status = resp.status
            res.endpoint = resp.headers.get("x-rastos-endpoint")
            if resp.status != 200:
                res.error = (await resp.text())[:500]
                res.latency = time.perf_counter() - t0
                return res
            if not stream:
                data = orjson.loads(await resp.read())
                now = time.perf_counter()
                res.ttft = res.latency = now - t0
                _usage(res, data.get("usage"))
                if keep_text and data.get("choices"):
                    c = data["choices"][0]
                    res.text = c["message"]["content"] if chat else c["text"]
                res.ok = True
                return res
            last = 0.0
            done = False
            async for line in resp.content:
                if not line.startswith(b"data: "):
                    continue
                payload = line[6:].strip()
                if payload == b"[DONE]":
                    done = True
                    break
                chunk = orjson.loads(payload)
                if chunk.get("usage"):
                    _usage(res, chunk["usage"])
                choices = chunk.get("choices") or ()
                if not choices:
                    continue
                c = choices[0]
                text = (c.get("delta") or {}).get("content") if chat else c.get("text")
                if text is None:
                    continue
                now = time.perf_counter()
                if res.ttft != res.ttft:
                    if text == "" and c.get("finish_reason") is None:
                        continue  # the role chunk is not a token
                    res.ttft = now - t0
                else:
                    res.itls.append(now - last)
                last = now
                if keep_text:
                    parts.append(text)
            res.latency = time.perf_counter() - t0
            if not done:
                res.error = "stream ended without [DONE]"
                return res
            res.ok = True
            res.text = "".join(parts)
            return res
    except (TimeoutError, aiohttp.ClientError, ConnectionError, ValueError) as exc:
        res.error = f"{type(exc).__name__}: {exc}"
        res.latency = time.perf_counter() - t0
        return res
