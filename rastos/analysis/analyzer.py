"""Request analysis: parse a body once and describe the request for the scheduler.

The gateway does not run the model's tokenizer (that would cost milliseconds per long
prompt); like llm-d's ``estimate`` token producer it counts about four bytes per token and
hashes the prompt's bytes in blocks of ``block_tokens × bytes_per_token``. The hashes are
chained (xxh3-64 of each block seeded with the previous hash), so each one fingerprints the
whole prefix. Chat messages are serialised role by role, so a conversation's next turn
extends the bytes of the previous turn and shares its blocks.

Headers understood (llm-d's names, the older ``x-gateway-*`` ones, and plain ones):
``x-session-id``; tenant ``x-llm-d-inference-fairness-id`` / ``x-gateway-inference-fairness-id``
/ ``x-tenant-id`` (else the body's ``user``); ``x-llm-d-slo-ttft-ms`` / ``x-slo-ttft-ms``,
``x-llm-d-slo-tpot-ms`` / ``x-slo-tpot-ms``; priority ``x-rastos-priority`` (higher is more
important, negative is sheddable, as InferenceObjective priorities).
"""

from __future__ import annotations

import array
from collections.abc import Callable, Mapping
from typing import Any

import xxhash

from rastos.sched.request import SchedRequest

__all__ = ["AnalysisError", "RequestAnalyzer", "block_hashes", "prompt_bytes"]

_xxh = xxhash.xxh3_64_intdigest


class AnalysisError(ValueError):
    """The body is not a valid request; ``param`` names the offending field."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


def _content_text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for p in content:
            if isinstance(p, dict):
                t = p.get("text")
                parts.append(t if isinstance(t, str) else repr(sorted(p.items(), key=str)))
            else:
                parts.append(str(p))
        return "".join(parts)
    return str(content)


def prompt_bytes(kind: str, body: Mapping[str, Any]) -> bytes:
    """The bytes that identify the prompt, prefix-stable across turns of a conversation."""
    if kind == "chat":
        msgs = body.get("messages")
        if not isinstance(msgs, list) or not msgs:
            raise AnalysisError("messages: a non-empty list of messages is required", "messages")
        out = []
        for i, m in enumerate(msgs):
            if not isinstance(m, dict) or not isinstance(m.get("role"), str):
                raise AnalysisError(f"messages[{i}]: each message needs a string role", "messages")
            out.append(f"<|{m['role']}|>\n{_content_text(m.get('content'))}\n")
        return "".join(out).encode("utf-8", "surrogatepass")
    prompt = body.get("prompt")
    if isinstance(prompt, str):
        return prompt.encode("utf-8", "surrogatepass")
    if isinstance(prompt, list) and prompt:
        if all(isinstance(x, str) for x in prompt):
            return "\n".join(prompt).encode("utf-8", "surrogatepass")
        if all(isinstance(x, int) and not isinstance(x, bool) for x in prompt):
            return array.array("I", [x & 0xFFFFFFFF for x in prompt]).tobytes()
        if all(isinstance(x, list) for x in prompt):
            return b"".join(array.array("I", [int(t) & 0xFFFFFFFF for t in x]).tobytes() for x in prompt)
    raise AnalysisError("prompt: a string, a list of strings or a list of token ids is required", "prompt")


def block_hashes(data: bytes, block_bytes: int, max_blocks: int) -> list[int]:
    """Chained 64-bit hashes of the full ``block_bytes`` blocks of ``data``."""
    n = min(len(data) // block_bytes, max_blocks)
    mv = memoryview(data)
    out = [0] * n
    h = 0
    for i in range(n):
        h = _xxh(mv[i * block_bytes : (i + 1) * block_bytes], h)
        out[i] = h
    return out


def _first(headers: Mapping[str, str], *names: str) -> str | None:
    for n in names:
        v = headers.get(n)
        if v:
            return v
    return None


def _float(v: str | None) -> float | None:
    if v is None:
        return None
    try:
        x = float(v)
    except ValueError:
        return None
    return x if x > 0 else None


class RequestAnalyzer:
    """Turns (kind, parsed body, headers) into a :class:`SchedRequest`."""

    def __init__(
        self,
        block_tokens: int | None = 64,
        *,
        bytes_per_token: float = 4.0,
        max_blocks: int = 2048,
        is_adapter: Callable[[str], bool] | None = None,
    ) -> None:
        self.block_tokens = block_tokens or 0
        self.bytes_per_token = bytes_per_token
        self.block_bytes = int(self.block_tokens * bytes_per_token) if block_tokens else 0
        self.max_blocks = max_blocks
        self.is_adapter = is_adapter or (lambda m: False)

    def analyze(self, kind: str, body: Any, headers: Mapping[str, str], request_id: str, now: float) -> SchedRequest:
        if not isinstance(body, dict):
            raise AnalysisError("the request body must be a JSON object")
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise AnalysisError("model: a model name is required", "model")
        data = prompt_bytes(kind, body)
        hashes = block_hashes(data, self.block_bytes, self.max_blocks) if self.block_bytes else []
        max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
        if max_tokens is not None and (not isinstance(max_tokens, int) or isinstance(max_tokens, bool)):
            raise AnalysisError("max_tokens: an integer is required", "max_tokens")
        prio_raw = headers.get("x-rastos-priority")
        try:
            priority = int(prio_raw) if prio_raw is not None else 0
        except ValueError:
            raise AnalysisError("x-rastos-priority: an integer is required", "x-rastos-priority") from None
        user = body.get("user")
        return SchedRequest(
            request_id=request_id,
            model=model,
            prompt_tokens=max(1, int(len(data) / self.bytes_per_token)),
            block_hashes=hashes,
            block_tokens=self.block_tokens or 64,
            lora=model if self.is_adapter(model) else None,
            tenant=_first(headers, "x-llm-d-inference-fairness-id", "x-gateway-inference-fairness-id", "x-tenant-id")
            or (user if isinstance(user, str) else None),
            session_id=headers.get("x-session-id"),
            priority=priority,
            slo_ttft_ms=_float(_first(headers, "x-llm-d-slo-ttft-ms", "x-slo-ttft-ms")),
            slo_tpot_ms=_float(_first(headers, "x-llm-d-slo-tpot-ms", "x-slo-tpot-ms")),
            max_tokens=max_tokens,
            stream=bool(body.get("stream")),
            headers=headers,
            arrival=now,
        )
