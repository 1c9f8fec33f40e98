"""The OpenAI-compatible wire format of the sim engine, shaped like vLLM's.

Request bodies are validated with pydantic (unknown fields are accepted, as vLLM accepts the
sampling parameters it does not use); errors are vLLM's JSON,
``{"error": {"message", "type", "param", "code"}}``, with vLLM's wording where a client may
parse it (context length). Streaming chunks are built from pre-encoded prefixes because one
engine step can emit hundreds of them: only the token text is JSON-encoded per chunk.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

__all__ = [
    "APIError",
    "ChatCompletionRequest",
    "ChatMessage",
    "ChunkEncoder",
    "CompletionRequest",
    "DetokenizeRequest",
    "StreamOptions",
    "TokenizeRequest",
    "error_body",
    "usage",
    "validation_message",
]

_ERROR_TYPES = {
    400: "BadRequestError",
    401: "AuthenticationError",
    404: "NotFoundError",
    409: "ConflictError",
    413: "RequestEntityTooLargeError",
    429: "RateLimitError",
    500: "InternalServerError",
    503: "ServiceUnavailableError",
}


class APIError(Exception):
    """An error the API answers with (status code, message, offending parameter)."""

    def __init__(self, status: int, message: str, param: str | None = None, err_type: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.err_type = err_type or _ERROR_TYPES.get(status) or HTTPStatus(status).phrase.replace(" ", "") + "Error"

    def body(self) -> bytes:
        return error_body(self.status, self.message, self.param, self.err_type)


def error_body(status: int, message: str, param: str | None = None, err_type: str | None = None) -> bytes:
    """vLLM's ``ErrorResponse`` JSON."""
    t = err_type or _ERROR_TYPES.get(status, "Error")
    return orjson.dumps({"error": {"message": message, "type": t, "param": param, "code": status}})


def validation_message(exc: ValidationError) -> tuple[str, str | None]:
    """A readable message naming the first offending field, and that field."""
    errs = exc.errors(include_url=False)
    parts = []
    for e in errs[:5]:
        loc = ".".join(str(p) for p in e["loc"]) or "body"
        parts.append(f"{loc}: {e['msg']}")
    first = errs[0]["loc"] if errs else ()
    param = str(first[0]) if first else None
    return "; ".join(parts), param


class _Body(BaseModel):
    model_config = ConfigDict(extra="allow")


class StreamOptions(_Body):
    include_usage: bool = False
    continuous_usage_stats: bool = False


class ChatMessage(_Body):
    role: str
    content: str | list[Any] | None = None


class _Sampling(_Body):
    model: str
    max_tokens: int | None = Field(default=None, ge=1)
    min_tokens: int = Field(default=0, ge=0)
    ignore_eos: bool = False
    stream: bool = False
    stream_options: StreamOptions | None = None
    seed: int | None = None
    n: int = Field(default=1, ge=1, le=128)
    priority: int = 0
    cache_salt: str | None = None
    temperature: float | None = Field(default=None, ge=0)
    top_p: float | None = Field(default=None, gt=0, le=1)


class ChatCompletionRequest(_Sampling):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    add_generation_prompt: bool = True
    chat_template_kwargs: dict[str, Any] | None = None


class CompletionRequest(_Sampling):
    prompt: str | list[int] | list[str] | list[list[int]]
    echo: bool = False


class TokenizeRequest(_Body):
    model: str | None = None
    prompt: str | None = None
    messages: list[ChatMessage] | None = None
    add_generation_prompt: bool = True
    add_special_tokens: bool = True


class DetokenizeRequest(_Body):
    model: str | None = None
    tokens: list[int]


def usage(prompt_tokens: int, completion_tokens: int, cached_tokens: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "completion_tokens": completion_tokens,
        "prompt_tokens_details": {"cached_tokens": max(cached_tokens, 0)},
    }


class ChunkEncoder:
    """Pre-encoded SSE chunk framing for one streamed response."""

    __slots__ = ("_head", "_mid", "_tail_none", "kind")

    def __init__(self, kind: Literal["chat", "completion"], resp_id: str, created: int, model: str) -> None:
        self.kind = kind
        obj = "chat.completion.chunk" if kind == "chat" else "text_completion"
        self._head = (
            b'data: {"id":' + orjson.dumps(resp_id) + b',"object":"' + obj.encode() + b'","created":'
            + str(created).encode() + b',"model":' + orjson.dumps(model) + b',"choices":[{"index":'
        )  # fmt: skip
        self._mid = b',"delta":{"content":' if kind == "chat" else b',"text":'
        self._tail_none = (
            b'},"logprobs":null,"finish_reason":null}]}\n\n'
            if kind == "chat"
            else b',"logprobs":null,"finish_reason":null,"stop_reason":null}]}\n\n'
        )

    def role(self, index: int) -> bytes:
        """The first chat chunk (``delta.role``), sent before any token."""
        return (
            self._head + str(index).encode()
            + b',"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]}\n\n'
        )  # fmt: skip

    def token(self, index: int, text: str) -> bytes:
        return self._head + str(index).encode() + self._mid + orjson.dumps(text) + self._tail_none

    def final(self, index: int, text: str, finish_reason: str) -> bytes:
        fr = orjson.dumps(finish_reason)
        if self.kind == "chat":
            tail = b'},"logprobs":null,"finish_reason":' + fr + b',"stop_reason":null}]}\n\n'
        else:
            tail = b',"logprobs":null,"finish_reason":' + fr + b',"stop_reason":null}]}\n\n'
        return self._head + str(index).encode() + self._mid + orjson.dumps(text) + tail

    def usage(self, resp_id: str, created: int, model: str, u: dict[str, Any]) -> bytes:
        obj = "chat.completion.chunk" if self.kind == "chat" else "text_completion"
        body = {"id": resp_id, "object": obj, "created": created, "model": model, "choices": [], "usage": u}
        return b"data: " + orjson.dumps(body) + b"\n\n"
