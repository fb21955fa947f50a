"""Keyword query parsing: free text to FTS5 terms, split by script.

User text never reaches MATCH raw: every term is quoted, so punctuation and FTS5
operators are never syntax.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

MAX_QUERY_TERMS = 64  # a pasted page must not become a 5000-way OR
FTS5_BM25_K1 = 1.2  # the k1 constant built into FTS5's bm25()

_CJK_CHARS = (
    "\u1100-\u11ff\u3005\u3040-\u30ff\u3130-\u318f\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff"
    "\ua960-\ua97f\uac00-\ud7ff\uf900-\ufaff\uff66-\uffdc\U00020000-\U0003134f"
)  # Han (with extensions), kana, Hangul (syllables, Jamo), the iteration mark
_CJK_RUN = re.compile(f"[{_CJK_CHARS}]+")
_CJK_SPLIT = re.compile(f"([{_CJK_CHARS}]+)")
_WORD = re.compile(r"[^\W_]+")  # letters and digits: FTS5's unicode61 separates on the rest
_TRIGRAM = 3
_BIGRAM = 2


def has_cjk(text: str) -> bool:
    return _CJK_RUN.search(text) is not None


def _pieces(text: str) -> Iterator[str]:
    """Runs of letters and digits of the NFC text, CJK runs split from the rest.

    Queries and the bigram index both cut text this way, so a term is found exactly where
    it occurs: Hangul particles (서울에서) or kana endings attach to a word without a space,
    so a CJK run is not a word and is searched by its n-grams instead.
    """
    for match in _WORD.finditer(unicodedata.normalize("NFC", text)):
        yield from filter(None, _CJK_SPLIT.split(match.group()))


@dataclass(frozen=True)
class KeywordTerms:
    """A user's keyword text split by where each term can be found.

    ``words`` go to the unicode61 table. CJK runs of 3+ characters go to the trigram
    table as the run itself plus each of its trigrams (so a sentence typed without
    spaces still matches text that shares only some of its words). Shorter CJK runs
    (most Chinese and many Korean words are two characters) go to the bigram table.
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
    for piece in _pieces(text):
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


def cjk_bigram_document(text: str) -> str:
    """The tokens of ``text`` for the bigram table, space-separated (its tokenizer is ``ascii``).

    Each CJK run becomes its overlapping bigrams followed by its last character, so every
    character of a run starts exactly one token: a 2-character term is one token lookup
    and a single character is a prefix lookup (``cjk_bigram_phrases``), with FTS5 counting
    each occurrence once. Everything that is not CJK is left out (the other tables have it).
    """
    tokens: list[str] = []
    for piece in _pieces(text):
        if has_cjk(piece):
            tokens.extend(piece[i : i + _BIGRAM] for i in range(len(piece) - 1))
            tokens.append(piece[-1])
    return " ".join(tokens)


def keyword_texts(chunks: Sequence[tuple[str | None, str]]) -> list[str]:
    """The text each chunk's keyword rows hold, for a file's (heading, text) in order: the
    chunk's own text between its neighbours' texts, those in the same section.

    BM25 over chunks of an embedding model's size (256 tokens for MiniLM) splits what one
    passage says: a query whose words fall on both sides of a boundary matched neither
    half well. With its neighbours' words a chunk is scored on about three times its span,
    while the chunk itself (what a hit shows, what its vector means) is unchanged.
    Measured with the chunk alone, with the next chunk and with both neighbours
    (docs/benchmarks.md, "Keyword rows: a chunk with its neighbours"): on the dev sets both
    neighbours lifted hybrid Recall@10 on both sets and lost the least anywhere (code
    hybrid MRR@10 -0.005); the next chunk alone cost docs MRR@10 in both modes.
    """

    def neighbour(i: int, j: int) -> list[str]:
        return [chunks[j][1]] if 0 <= j < len(chunks) and chunks[j][0] == chunks[i][0] else []

    return ["\n".join([*neighbour(i, i - 1), text, *neighbour(i, i + 1)]) for i, (_, text) in enumerate(chunks)]


def _quoted(term: str) -> str:
    """An FTS5 string: "" escapes a quote, so the term is never syntax."""
    return '"' + term.replace('"', '""') + '"'


def fts5_phrases(terms: Iterable[str]) -> str | None:
    """Quote each term as an FTS5 string and OR them, or None."""
    return " OR ".join(map(_quoted, terms)) or None


def cjk_bigram_phrases(short_runs: Iterable[str]) -> list[str]:
    """The bigram table's phrases for 1-2 character CJK runs, one per run.

    A 2-character run is a bigram token; a single character is the prefix of the tokens
    that start with it (see ``cjk_bigram_document``).
    """
    return [_quoted(run) + ("*" if len(run) == 1 else "") for run in short_runs]


def keyword_sources(terms: KeywordTerms) -> list[tuple[str, list[str]]]:
    """(FTS5 table, the query's phrases for it) for each table that has terms to search.

    One place says which table searches which terms: the keyword search ORs each table's
    phrases, and the BM25 ceiling (``bm25_ceiling``) weighs each phrase on its own.

    Words are searched twice, as written (``chunks_fts``) and stemmed (``chunks_stemmed``,
    Porter), and the two BM25 scores add up: a chunk with the query's own word form scores
    in both, one with another form of it ("indexing" for "indexed") in the stemmed table
    only. Measured against either table alone (docs/benchmarks.md, "Keyword: stemming"),
    the sum was the only one better on all three sets: stemming alone lifted SciFact's
    abstracts but cost the documentation and code dev sets, where exact identifiers and
    heading words matter.
    """
    words = [_quoted(word) for word in terms.words]
    sources = (
        ("chunks_fts", words),
        ("chunks_stemmed", words),
        ("chunks_cjk", [_quoted(gram) for gram in terms.cjk_grams]),
        ("chunks_cjk_bigrams", cjk_bigram_phrases(terms.cjk_short)),
    )
    return [(table, phrases) for table, phrases in sources if phrases]


MIN_QUERY_IDF = 1.0  # a query's word weight counts as at least one word in ~27% of the chunks


def fts5_idf(rows: int, matching: int) -> float:
    """A phrase's IDF exactly as FTS5's bm25() computes it: log((N - n + 0.5) / (n + 0.5)),
    floored at 1e-6 (a phrase in more than half the rows still counts a little)."""
    return max(math.log((rows - matching + 0.5) / (matching + 0.5)), 1e-6)


def bm25_ceiling(idfs: Iterable[float]) -> float:
    """The most BM25 score any row can reach for phrases with these IDFs: (k1 + 1) * their sum.

    Each phrase adds idf * tf * (k1 + 1) / (tf + k1 * length_norm) to FTS5's bm25(),
    which tends to idf * (k1 + 1) as its (column-weighted) frequency tf grows, whatever
    the row's length. So a keyword score divided by this is on a 0..1 scale that means
    the same in every query and index: how much of the query's term weight a chunk holds.

    The sum counts as at least ``MIN_QUERY_IDF``: words in more than half the chunks get
    FTS5's IDF of 1e-6, and a query of only such words would otherwise have a ceiling of
    almost 0, so any chunk repeating them would score nearly 1, a strong keyword match
    made of words that tell nothing apart. 0 when there are no phrases.
    """
    idfs = list(idfs)
    return (FTS5_BM25_K1 + 1.0) * max(sum(idfs), MIN_QUERY_IDF) if idfs else 0.0


def fts5_query(text: str) -> str | None:
    """The MATCH expression for ``chunks_fts`` from free text: its words, quoted, ORed.

    OR (not AND) because BM25 already ranks chunks with more of the words higher, and a
    query word missing from a relevant chunk should not hide it. None when the text has
    no word to search for. CJK runs are searched through the CJK tables instead (see
    ``keyword_terms``).
    """
    return fts5_phrases(keyword_terms(text).words)


def read_varint(data: bytes) -> int:
    """The SQLite varint (FTS5 writes its records with the same) at the start of ``data``:
    big-endian, 7 bits a byte while the high bit is set, all 8 bits of a 9th byte."""
    value = 0
    for position, byte in enumerate(data[:9]):
        if position == 8:
            return (value << 8) | byte
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            break
    return value
