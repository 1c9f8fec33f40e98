"""Rendering chat messages into one prompt through a Jinja chat template, as vLLM does.

The default template is Llama 3's (header tokens, ``<|eot_id|>`` after each turn, content
trimmed), so a multi-turn conversation re-sent by a client renders to the previous turn's
prompt plus the previous answer plus the new turn: the shared prefix real routers exploit.
``--chat-template FILE`` takes any other Jinja template; it runs in Jinja's sandbox.
"""

from __future__ import annotations

from typing import Any

from jinja2 import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

__all__ = ["LLAMA3_TEMPLATE", "ChatTemplate", "ChatTemplateError", "message_text"]

LLAMA3_TEMPLATE = (
    "{{- bos_token }}"
    "{%- for message in messages %}"
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + (message['content'] | trim) + '<|eot_id|>' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}"
)


class ChatTemplateError(ValueError):
    """The messages cannot be rendered (bad content, template failure)."""


def message_text(content: Any) -> str:
    """OpenAI message content (string or list of parts) as plain text."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, dict) and part.get("type") in ("text", "input_text"):
                parts.append(str(part.get("text", "")))
            elif isinstance(part, str):
                parts.append(part)
            else:
                kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                raise ChatTemplateError(f"unsupported message content part type {kind!r}; this model takes text only")
        return "".join(parts)
    raise ChatTemplateError("message content must be a string or a list of content parts")


class ChatTemplate:
    """A compiled chat template."""

    def __init__(self, source: str = LLAMA3_TEMPLATE, bos_token: str = "<|begin_of_text|>") -> None:
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        self._tpl = env.from_string(source)
        self.bos_token = bos_token

    def render(self, messages: list[dict[str, Any]], add_generation_prompt: bool = True, **kwargs: Any) -> str:
        msgs = [{**m, "content": message_text(m.get("content"))} for m in messages]
        try:
            return self._tpl.render(
                messages=msgs, add_generation_prompt=add_generation_prompt, bos_token=self.bos_token, **kwargs
            )
        except TemplateError as exc:
            raise ChatTemplateError(f"chat template failed: {exc}") from None
