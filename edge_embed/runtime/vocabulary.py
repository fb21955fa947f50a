"""A model's vocabulary: the tokens of a text, and the special tokens around every input.

The Embedder needs them over the model it runs; token counting for an embedding server
(``--embed-url``, ``runtime/remote.py``) needs them too, but nothing else of the model: it
loads the vocabulary alone (llama.cpp's ``vocab_only``: no weights on any device, no
context, no decode), so it costs milliseconds and works even where llama.cpp's kernels
cannot run on this CPU (``runtime/amx.py``'s "crashes").

Texts are tokenised with ``special=False``: user text can never inject control tokens.
Qwen3 embedding models always get ``<|endoftext|>`` as suffix, found by its text, whatever
the GGUF declares (see ``qwen3_eos``).
"""

from __future__ import annotations

import ctypes
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from edge_embed.modelfile import ModelInfo

log = logging.getLogger("edge_embed")

QWEN3_EOS_TEXT = "<|endoftext|>"


@dataclass
class Vocabulary:
    """Tokens over one llama.cpp vocabulary, with the model's input prefix and suffix."""

    vocab: Any  # a llama_vocab pointer, valid while its model is loaded
    model: ModelInfo
    qwen3_format: bool
    prefix: list[int] = field(init=False)
    suffix: list[int] = field(init=False)

    def __post_init__(self) -> None:
        self.prefix, self.suffix = self._special_tokens()

    def tokenize(self, text: str) -> list[int]:
        """The model's tokens for ``text``: no special tokens added, none parsed."""
        return tokenize(self.vocab, text, special=False)

    def count_tokens(self, text: str) -> int:
        """Tokens ``text`` costs, *without* the special tokens added around every input."""
        return len(self.tokenize(text))

    @property
    def special_token_count(self) -> int:
        """Tokens added around every input (1 for Qwen3: the EOS)."""
        return len(self.prefix) + len(self.suffix)

    @property
    def size(self) -> int:
        """Token ids run from 0 to this (exclusive): the range a token-id input must be in."""
        return int(_llama_cpp().llama_vocab_n_tokens(self.vocab))

    def is_wrapped(self, ids: Sequence[int]) -> bool:
        """Whether token ids already carry this model's prefix and suffix (``[CLS] ... [SEP]``
        from a client that tokenized with special tokens, Qwen3's final ``<|endoftext|>``):
        such ids are a complete input, and wrapping them again would embed [CLS] [CLS] ...
        [SEP] [SEP], a different vector."""
        prefix, suffix = self.prefix, self.suffix
        if not (prefix or suffix) or len(ids) <= len(prefix) + len(suffix):
            return False
        return list(ids[: len(prefix)]) == prefix and list(ids[len(ids) - len(suffix):]) == suffix

    def _special_tokens(self) -> tuple[list[int], list[int]]:
        """The tokens the model puts around every input, found by tokenising a probe."""
        if self.qwen3_format:
            return [], [self.qwen3_eos()]
        probe = "a"
        body = self.tokenize(probe)
        data = probe.encode()
        buf = (ctypes.c_int32 * 16)()
        n = _llama_cpp().llama_tokenize(self.vocab, data, len(data), buf, 16, True, False)
        full = list(buf[:n])
        start = _find_sublist(full, body)
        return full[:start], full[start + len(body):]

    def qwen3_eos(self) -> int:
        """``<|endoftext|>``, found by its text: the token Qwen3-Embedding pools.

        Conversions made before llama.cpp PR #14314 declare ``<|im_end|>`` as EOS;
        appending the declared EOS would pool the wrong token, costing retrieval quality
        without any error. A vocabulary without ``<|endoftext|>`` keeps the declared EOS.
        """
        declared = int(_llama_cpp().llama_vocab_eos(self.vocab))
        found = self._special_token_id(QWEN3_EOS_TEXT)
        if found is None:
            log.warning(
                "%s has no %s token: appending its declared EOS %s instead",
                self.model.path.name, QWEN3_EOS_TEXT, self._token_text(declared),
            )
            return declared
        if found != declared:
            log.warning(
                "%s declares %s (%d) as EOS, but Qwen3-Embedding pools %s (%d): appending %s"
                " (a conversion made before llama.cpp PR #14314?)",
                self.model.path.name, self._token_text(declared), declared, QWEN3_EOS_TEXT, found, QWEN3_EOS_TEXT,
            )
        return found

    def _special_token_id(self, text: str) -> int | None:
        """The id of the special token spelled ``text``, or None when the vocabulary has none."""
        data = text.encode()
        buf = (ctypes.c_int32 * 4)()
        n = _llama_cpp().llama_tokenize(self.vocab, data, len(data), buf, len(buf), False, True)
        if n != 1 or self._token_text(buf[0]) != text:
            return None
        return int(buf[0])

    def _token_text(self, token: int) -> str:
        return _llama_cpp().llama_vocab_get_text(self.vocab, token).decode("utf-8", errors="replace")


def tokenize(vocab, text: str, *, special: bool) -> list[int]:
    """The tokens of ``text`` (no BOS/EOS added); ``special`` parses control-token text
    such as ``<|im_end|>`` as those tokens: only ever for our own templates, never user text."""
    data = text.encode("utf-8", errors="replace")
    capacity = len(data) + 8
    buf = (ctypes.c_int32 * capacity)()
    n = _llama_cpp().llama_tokenize(vocab, data, len(data), buf, capacity, False, special)
    if n < 0:  # a tokenizer that yields more tokens than bytes (never for byte-level BPE)
        capacity = -n
        buf = (ctypes.c_int32 * capacity)()
        n = _llama_cpp().llama_tokenize(vocab, data, len(data), buf, capacity, False, special)
    return list(buf[:n])


def _find_sublist(haystack: list[int], needle: list[int]) -> int:
    for start in range(len(haystack) - len(needle) + 1):
        if haystack[start:start + len(needle)] == needle:
            return start
    return 0


def _llama_cpp():
    import llama_cpp

    return llama_cpp
