"""Keyword query parsing: free text to FTS5 terms, split by script.

User text never reaches MATCH raw: every term is quoted, so punctuation and FTS5
operators are never syntax.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

MAX_QUERY_TERMS = 64  # a pasted page must not become a 5000-way OR
BM25_K1 = 1.2  # FTS5's own bm25 constant, so substring scores sum on the same scale

_CJK_CHARS = (
    "\u3005\u3040-\u30ff\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff66-\uff9f"
    "\U00020000-\U0003134f"
)  # Han (with extensions), kana, the iteration mark: scripts written without spaces
_CJK_RUN = re.compile(f"[{_CJK_CHARS}]+")
_CJK_SPLIT = re.compile(f"([{_CJK_CHARS}]+)")
_WORD = re.compile(r"[^\W_]+")  # letters and digits: FTS5's unicode61 separates on the rest
_TRIGRAM = 3


def has_cjk(text: str) -> bool:
    return _CJK_RUN.search(text) is not None


@dataclass(frozen=True)
class KeywordTerms:
    """A user's keyword text split by where each term can be found.

    ``words`` go to the unicode61 table. CJK runs of 3+ characters go to the trigram
    table as the run itself plus each of its trigrams (so a sentence typed without
    spaces still matches text that shares only some of its words). Shorter CJK runs
    (most Chinese words are two characters) cannot be found through a trigram index and
    are matched as substrings of the CJK chunks.
    """

    words: tuple[str, ...] = ()
    cjk_grams: tuple[str, ...] = ()
    cjk_short: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.words or self.cjk_grams or self.cjk_short)


def _cjk_grams(run: str) -> list[str]:
    if len(run) <= _TRIGRAM:
        return [run]
    return [run] + [run[i : i + _TRIGRAM] for i in range(len(run) - _TRIGRAM + 1)]


def keyword_terms(text: str) -> KeywordTerms:
    """Split free text into searchable terms; punctuation and operators are never syntax."""
    words: dict[str, str] = {}  # casefolded -> as typed: "Walrus walrus" is one term
    grams: dict[str, None] = {}  # dicts as ordered sets
    short: dict[str, None] = {}
    for match in _WORD.finditer(unicodedata.normalize("NFC", text)):
        for piece in filter(None, _CJK_SPLIT.split(match.group())):
            if not has_cjk(piece):
                words.setdefault(piece.casefold(), piece)
            elif len(piece) < _TRIGRAM:
                short[piece] = None
            else:
                grams.update(dict.fromkeys(_cjk_grams(piece)))
        if len(words) + len(grams) + len(short) >= MAX_QUERY_TERMS:
            break
    kept_words = list(words.values())[:MAX_QUERY_TERMS]
    kept_grams = list(grams)[: MAX_QUERY_TERMS - len(kept_words)]
    kept_short = list(short)[: MAX_QUERY_TERMS - len(kept_words) - len(kept_grams)]
    return KeywordTerms(tuple(kept_words), tuple(kept_grams), tuple(kept_short))


def fts5_phrases(terms: Iterable[str]) -> str | None:
    """Quote each term as an FTS5 string ("" escapes a quote) and OR them, or None."""
    quoted = ['"' + term.replace('"', '""') + '"' for term in terms]
    return " OR ".join(quoted) or None


def fts5_query(text: str) -> str | None:
    """The MATCH expression for ``chunks_fts`` from free text: its words, quoted, ORed.

    OR (not AND) because BM25 already ranks chunks with more of the words higher, and a
    query word missing from a relevant chunk should not hide it. None when the text has
    no word to search for. CJK runs are searched through the trigram table instead (see
    ``keyword_terms``).
    """
    return fts5_phrases(keyword_terms(text).words)


def bm25_idf(total: int, hits: int) -> float:
    """FTS5's idf, clamped like FTS5 does so very common terms still count a little."""
    idf = math.log((total - hits + 0.5) / (hits + 0.5))
    return idf if idf > 0 else 1e-6
