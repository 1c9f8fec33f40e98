"""Deterministic, readable generated text, and how long the model "decides" to answer.

The engine asks a :class:`TextSource` for one token id per step; the source produces English
sentences from a fixed word list with a seeded RNG, tokenises them with the engine's
tokenizer and hands the pieces out one by one, keeping each piece's text for the HTTP layer.
Because the pieces come from tokenising the very text that is returned, a client that sends
the answer back in the next turn produces the same token ids, and the next turn hits the
prefix cache on it, as on vLLM. The final token of an answer that ends by EOS is the
tokenizer's EOS id with empty text.

Answer length without ``ignore_eos``: log-normal with a median of ``median`` tokens and shape
``sigma``, drawn from the request's RNG, at least ``min_tokens``; an answer longer than ``max_tokens``
is cut there (finish reason ``length``).
"""

from __future__ import annotations

import math
import random
from functools import cache
from importlib import resources

from rastos.engine.tokenizer import Tokenizer

__all__ = ["TextSource", "sample_eos_at", "word_list"]


@cache
def word_list() -> tuple[str, ...]:
    text = (resources.files("rastos.engine") / "data" / "words.txt").read_text()
    return tuple(text.split())


def sample_eos_at(rng: random.Random, min_tokens: int, max_tokens: int, median: float, sigma: float) -> int | None:
    """Output length at which EOS is emitted (counted with the EOS token itself).

    None when the natural length exceeds ``max_tokens``: the answer is cut (``length``).
    """
    n = round(math.exp(rng.gauss(math.log(max(median, 1.0)), sigma)))
    n = max(n, min_tokens, 1)
    return None if n > max_tokens else n


class TextSource:
    """Hands out token ids of readable sentences; remembers the text of each one."""

    __slots__ = ("_buf", "_count", "_pos", "_rng", "_tok", "_words", "eos_at", "texts")

    def __init__(self, tokenizer: Tokenizer, seed: int, eos_at: int | None = None) -> None:
        self._tok = tokenizer
        self._rng = random.Random(seed)
        self._words = word_list()
        self._buf: list[tuple[int, str]] = []
        self._pos = 0
        self.texts: list[str] = []
        self.eos_at = eos_at
        self._count = 0

    def _sentence_pretokens(self) -> list[str]:
        """One sentence as pre-tokens: words with their leading space, then punctuation."""
        rng = self._rng
        picked = rng.choices(self._words, k=rng.randint(6, 18))
        n = len(picked)
        first = picked[0]
        lead = "" if not self.texts and self._pos == 0 and not self._buf else " "
        out = [lead + first[0].upper() + first[1:]]
        comma = rng.randrange(3, n - 3) if n > 9 and rng.random() < 0.5 else -1
        for i in range(1, n):
            out.append(" " + picked[i])
            if i == comma:
                out.append(",")
        out.append(".")
        return out

    def _refill(self) -> None:
        pretokens = self._sentence_pretokens()
        fast = getattr(self._tok, "pretoken_pieces", None)
        if fast is not None:  # the built-in tokenizer splits exactly at these boundaries
            buf: list[tuple[int, str]] = []
            for pt in pretokens:
                buf.extend(fast(pt))
            self._buf = buf
        else:
            self._buf = self._tok.pieces("".join(pretokens))
        self._pos = 0

    def __call__(self) -> int:
        self._count += 1
        if self.eos_at is not None and self._count >= self.eos_at:
            self.texts.append("")
            return self._tok.eos_token_id
        if self._pos >= len(self._buf):
            self._refill()
        tid, text = self._buf[self._pos]
        self._pos += 1
        self.texts.append(text)
        return tid

    def text(self, start: int = 0, end: int | None = None) -> str:
        return "".join(self.texts[start:end])
