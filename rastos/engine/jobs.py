"""One HTTP request in flight: its engine requests (one per choice) and how results leave.

The driver calls :meth:`Job.deliver` synchronously after every step for each choice that got
a token. A streaming job frames the SSE chunk itself and writes it straight to the
connection's transport (HTTP/1.1 chunked encoding, after aiohttp has sent the headers), so
300 streams cost 300 ``transport.write`` calls per step and no task switches. When every
choice has finished, the job writes the usage chunk and ``data: [DONE]`` and resolves
``done``; the handler then closes the chunked body through aiohttp. A non-streaming job only
resolves ``done``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Literal

import orjson

from rastos.engine.protocol import ChunkEncoder, usage
from rastos.engine.request import EngineRequest
from rastos.engine.textgen import TextSource

__all__ = ["Choice", "Job"]


class Choice:
    """One generated sequence of a job (``n`` > 1 or a batch of prompts give several)."""

    __slots__ = ("index", "job", "prompt_index", "req", "sent", "source")

    def __init__(self, job: Job, index: int, req: EngineRequest, source: TextSource, prompt_index: int) -> None:
        self.job = job
        self.index = index
        self.req = req
        self.source = source
        self.sent = 0
        self.prompt_index = prompt_index


def _frame(data: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(data), data)


class Job:
    """Results of one HTTP request, written as the engine produces them."""

    def __init__(
        self,
        kind: Literal["chat", "completion"],
        resp_id: str,
        created: int,
        model: str,
        *,
        stream: bool,
        include_usage: bool,
        abort: Callable[[EngineRequest], None],
        disconnect_after: int | None = None,
    ) -> None:
        self.kind = kind
        self.resp_id = resp_id
        self.created = created
        self.model = model
        self.stream = stream
        self.include_usage = include_usage
        self.choices: list[Choice] = []
        self.done: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.enc = ChunkEncoder(kind, resp_id, created, model) if stream else None
        self.transport: asyncio.Transport | None = None
        self._abort = abort
        self._remaining = 0
        self._disconnect_after = disconnect_after
        self._tokens_sent = 0

    def add(self, req: EngineRequest, source: TextSource, prompt_index: int) -> Choice:
        ch = Choice(self, len(self.choices), req, source, prompt_index)
        req.user_data = ch
        self.choices.append(ch)
        self._remaining += 1
        return ch

    # ------------------------------------------------------------------ streaming
    def start_stream(self, transport: asyncio.Transport) -> None:
        """Headers are out; the body starts with the first token (vLLM sends a chat stream's
        role chunk only when the first output arrives, i.e. after prefill)."""
        self.transport = transport

    def deliver(self, ch: Choice) -> None:
        if self.done.done():
            return
        req = ch.req
        if self.stream:
            tr = self.transport
            if tr is None or tr.is_closing():
                self.cancel("client disconnected")
                return
            texts = ch.source.texts
            first = ch.sent == 0
            new = "".join(texts[ch.sent :]) if len(texts) - ch.sent != 1 else texts[-1]
            self._tokens_sent += len(texts) - ch.sent
            ch.sent = len(texts)
            enc = self.enc
            assert enc is not None
            if req.finished:
                data = enc.final(ch.index, new, req.finish_reason or "stop")
            else:
                data = enc.token(ch.index, new)
            if first and self.kind == "chat":
                tr.write(_frame(enc.role(ch.index)) + _frame(data))
            else:
                tr.write(_frame(data))
            if self._disconnect_after is not None and self._tokens_sent >= self._disconnect_after:
                tr.abort()
                self.cancel("disconnect fault")
                return
        if req.finished:
            self._remaining -= 1
            if self._remaining == 0:
                if self.stream:
                    self._end_stream()
                self.done.set_result("ok")

    def _end_stream(self) -> None:
        tr = self.transport
        assert tr is not None and self.enc is not None
        parts = []
        if self.include_usage:
            parts.append(_frame(self.enc.usage(self.resp_id, self.created, self.model, self.usage())))
        parts.append(_frame(b"data: [DONE]\n\n"))
        tr.write(b"".join(parts))

    def cancel(self, why: str) -> None:
        """Abort every unfinished choice (client gone, fault, shutdown)."""
        for ch in self.choices:
            if not ch.req.finished:
                self._abort(ch.req)
        if not self.done.done():
            self.done.set_result(why)

    # ------------------------------------------------------------------ results
    def usage(self) -> dict[str, Any]:
        prompts: dict[int, EngineRequest] = {}
        completion = 0
        for ch in self.choices:
            prompts.setdefault(ch.prompt_index, ch.req)
            completion += ch.req.num_output_tokens
        prompt = sum(r.num_prompt_tokens for r in prompts.values())
        cached = sum(max(r.num_cached_tokens, 0) for r in prompts.values())
        return usage(prompt, completion, cached)

    def response_body(self, prompt_texts: list[str] | None = None) -> bytes:
        """The non-streaming JSON response."""
        choices: list[dict[str, Any]] = []
        for ch in self.choices:
            text = ch.source.text()
            if self.kind == "chat":
                choices.append({
                    "index": ch.index,
                    "message": {
                        "role": "assistant", "content": text, "refusal": None, "annotations": None,
                        "audio": None, "function_call": None, "tool_calls": [], "reasoning_content": None,
                    },
                    "logprobs": None, "finish_reason": ch.req.finish_reason, "stop_reason": None,
                })  # fmt: skip
            else:
                if prompt_texts is not None:
                    text = prompt_texts[ch.prompt_index] + text
                choices.append({
                    "index": ch.index, "text": text, "logprobs": None,
                    "finish_reason": ch.req.finish_reason, "stop_reason": None, "prompt_logprobs": None,
                })  # fmt: skip
        body: dict[str, Any] = {
            "id": self.resp_id,
            "object": "chat.completion" if self.kind == "chat" else "text_completion",
            "created": self.created,
            "model": self.model,
            "choices": choices,
            "service_tier": None,
            "system_fingerprint": None,
            "usage": self.usage(),
            "prompt_logprobs": None,
            "kv_transfer_params": None,
        }
        return orjson.dumps(body)
