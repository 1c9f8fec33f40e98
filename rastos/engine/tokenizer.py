"""Tokenizers for the simulated engine: a built-in one, and real ones from ``tokenizer.json``.

The built-in tokenizer needs no files and no downloads. It pre-tokenises like GPT-style BPE
(words with their leading space, digit groups of three, punctuation runs, newlines), then cuts
each piece into chunks of at most seven characters; on English prose that gives about four
characters per token, like Llama 3's tokenizer. Ids are stable across processes and machines
(CRC-32 of the chunk folded into Llama 3's 128k vocabulary) and Llama 3's special tokens keep
their real ids, so chat templates and block hashes behave as on the real model. Distinct
chunks can share an id (the vocabulary is finite), so ``decode`` is best effort; generated
text never goes through it (see ``textgen``).

``--tokenizer PATH`` loads a local Hugging Face ``tokenizer.json`` with ``tokenizers``.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

__all__ = ["LLAMA3_SPECIAL_TOKENS", "BuiltinTokenizer", "HFTokenizer", "Tokenizer", "load_tokenizer"]

LLAMA3_SPECIAL_TOKENS: dict[str, int] = {
    "<|begin_of_text|>": 128000,
    "<|end_of_text|>": 128001,
    "<|start_header_id|>": 128006,
    "<|end_header_id|>": 128007,
    "<|eom_id|>": 128008,
    "<|eot_id|>": 128009,
    "<|python_tag|>": 128010,
}

_PRETOKENIZE = re.compile(
    r"""'(?:[sdmt]|ll|ve|re)| ?[^\W\d_]+| ?\d{1,3}| ?(?:[^\s\w]|_)+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)
_CHUNK = 7
_BASE_VOCAB = 128000


class Tokenizer(Protocol):
    """What the engine server needs from a tokenizer."""

    vocab_size: int
    bos_token: str
    bos_token_id: int | None
    eos_token_id: int

    def encode(self, text: str, add_bos: bool = False) -> list[int]: ...

    def decode(self, ids: Sequence[int]) -> str: ...

    def pieces(self, text: str) -> list[tuple[int, str]]:
        """Token ids of ``text`` with the exact substring each one covers."""
        ...


class BuiltinTokenizer:
    """Deterministic, file-free tokenizer with Llama 3 special tokens."""

    vocab_size = 128256
    bos_token = "<|begin_of_text|>"
    bos_token_id: int | None = 128000
    eos_token_id = 128009

    def __init__(self) -> None:
        self.special = dict(LLAMA3_SPECIAL_TOKENS)
        self._special_re = re.compile("(" + "|".join(re.escape(s) for s in self.special) + ")")
        self._id_text: dict[int, str] = {v: k for k, v in self.special.items()}
        self._memo: dict[str, tuple[tuple[int, str], ...]] = {}

    def pretoken_pieces(self, piece: str) -> tuple[tuple[int, str], ...]:
        """Tokens of one pre-token (a word with its leading space, a punctuation run)."""
        return self._piece_tokens(piece)

    def _piece_tokens(self, piece: str) -> tuple[tuple[int, str], ...]:
        toks = self._memo.get(piece)
        if toks is not None:
            return toks
        out = []
        for i in range(0, len(piece), _CHUNK):
            chunk = piece[i : i + _CHUNK]
            if len(chunk) == 1 and ord(chunk) < 256:
                tid = ord(chunk)
            else:
                tid = 256 + zlib.crc32(chunk.encode("utf-8")) % (_BASE_VOCAB - 256)
            self._id_text.setdefault(tid, chunk)
            out.append((tid, chunk))
        toks = tuple(out)
        if len(self._memo) < 500_000:
            self._memo[piece] = toks
        return toks

    def pieces(self, text: str) -> list[tuple[int, str]]:
        out: list[tuple[int, str]] = []
        for part in self._special_re.split(text) if "<|" in text else (text,):
            if not part:
                continue
            sid = self.special.get(part)
            if sid is not None:
                out.append((sid, part))
                continue
            for piece in _PRETOKENIZE.findall(part):
                out.extend(self._piece_tokens(piece))
        return out

    def encode(self, text: str, add_bos: bool = False) -> list[int]:
        ids = [t for t, _ in self.pieces(text)]
        if add_bos:
            ids.insert(0, self.bos_token_id)  # type: ignore[arg-type]
        return ids

    def decode(self, ids: Sequence[int]) -> str:
        get = self._id_text.get
        return "".join(get(i, "") for i in ids)


class HFTokenizer:
    """A Hugging Face ``tokenizer.json`` loaded from disk (never from a hub)."""

    def __init__(self, path: str | Path) -> None:
        from tokenizers import Tokenizer as _HF

        p = Path(path)
        if p.is_dir():
            p = p / "tokenizer.json"
        if not p.is_file():
            raise FileNotFoundError(f"no tokenizer.json at {path}")
        self._tok = _HF.from_file(str(p))
        self.vocab_size = self._tok.get_vocab_size(with_added_tokens=True)
        vocab = self._tok.get_vocab(with_added_tokens=True)
        self.bos_token = next((t for t in ("<|begin_of_text|>", "<s>", "<bos>") if t in vocab), "")
        self.bos_token_id = vocab.get(self.bos_token) if self.bos_token else None
        eos = next((t for t in ("<|eot_id|>", "<|im_end|>", "</s>", "<eos>", "<|endoftext|>") if t in vocab), None)
        self.eos_token_id = vocab[eos] if eos else self.vocab_size - 1

    def pieces(self, text: str) -> list[tuple[int, str]]:
        enc = self._tok.encode(text, add_special_tokens=False)
        out = []
        prev = 0
        for tid, (_, end) in zip(enc.ids, enc.offsets, strict=False):
            end = max(end, prev)
            out.append((tid, text[prev:end]))
            prev = end
        if out and prev < len(text):  # trailing text not covered by offsets
            tid, s = out[-1]
            out[-1] = (tid, s + text[prev:])
        return out

    def encode(self, text: str, add_bos: bool = False) -> list[int]:
        ids = self._tok.encode(text, add_special_tokens=False).ids
        if add_bos and self.bos_token_id is not None:
            ids.insert(0, self.bos_token_id)
        return ids

    def decode(self, ids: Sequence[int]) -> str:
        return self._tok.decode(list(ids), skip_special_tokens=False)


def load_tokenizer(path: str | None) -> Tokenizer:
    """The built-in tokenizer, or a local ``tokenizer.json`` when a path is given."""
    if path:
        return HFTokenizer(path)
    return BuiltinTokenizer()
