"""User text must never reach FTS5's MATCH as syntax: every input is quoted terms or nothing."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import apsw
import numpy as np
import pytest

from edge_embed.store import MAX_QUERY_TERMS, FileRecord, IndexSettings, NewChunk, Store, fts5_query, keyword_terms

ADVERSARIAL = [
    "",
    "   \t\n  ",
    '"',
    '"""',
    'say "hello',
    'unbalanced "quote and "another',
    "'single quotes' and it's",
    "-",
    "-walrus",
    "walrus -narwhal",
    "*",
    "walr*",
    "^walrus",
    ":",
    "text:walrus",
    "heading:notes path:readme",
    "{text heading}: walrus",
    "(",
    ")",
    "(walrus OR (narwhal",
    "AND",
    "OR",
    "NOT",
    "walrus AND narwhal",
    "walrus OR NOT narwhal",
    "NEAR",
    "NEAR(walrus narwhal)",
    "NEAR(walrus narwhal, 2)",
    "walrus + narwhal",
    "🦭🐋🎉",
    "walrus 🦭 emoji",
    "!!!???...;;;",
    "'; DROP TABLE chunks; --",
    "\" OR 1=1 --",
    "walrus\x00narwhal",
    "\x00",
    "back\\slash \\ C:\\path\\to\\file",
    "机器学习",
    "学习",
    "東京の天気 \"quoted\" -minus",
    "Pythonの使い方",
    "ＡＢＣ fullwidth",
    "ｶﾀｶﾅ halfwidth kana",
    "e\u0301cole combining accent",
    "walrus " * 5000,
    "x" * 100_000,
    "".join(chr(c) for c in range(0x20, 0x7F)),
    "rank MATCH bm25() rowid=1",
]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory):
    """A small real index whose FTS tables receive every adversarial MATCH."""
    folder = tmp_path_factory.mktemp("kw")
    rng = np.random.default_rng(0)
    texts = [
        "The walrus and the narwhal swim in cold water.",
        "Notes about readme files: NOT, AND, OR and NEAR are plain words here.",
        "机器学习和深度学习的笔记。",
        "東京の天気は晴れです。Pythonの使い方。",
        "École: le café est fermé.",
    ]
    with Store.open(folder / "index.db") as opened:
        dims = 8
        opened.meta.init_settings(IndexSettings("tiny", "/m.gguf", 1, "h", dims, 512, 64))
        root_id = opened.files.add_root(folder)
        vectors = rng.standard_normal((len(texts), dims)).astype(np.float32)
        chunks = [
            NewChunk(i, i + 1, i + 1, f"Notes {i}", text, hashlib.sha256(text.encode()).hexdigest(), vector)  # a section each: no neighbours
            for i, (text, vector) in enumerate(zip(texts, vectors))
        ]
        opened.files.write_file(FileRecord(root_id, "notes/readme.md", str(folder / "notes/readme.md"), 1, 1, "c"), chunks)
        yield opened


def raw_match(store: Store, expression: str) -> list[int]:
    conn = apsw.Connection(str(store.path))
    try:
        return [row[0] for row in conn.execute("SELECT rowid FROM chunks_fts WHERE chunks_fts MATCH ?", (expression,))]
    finally:
        conn.close()


@pytest.mark.parametrize("text", ADVERSARIAL, ids=lambda text: repr(text[:30]))
def test_adversarial_input_never_raises(store: Store, text: str) -> None:
    expression = fts5_query(text)
    if expression is not None:
        raw_match(store, expression)
    for k in (1, 10):
        results = store.keywords.keyword_search(text, k)
        assert len(results) <= k
        assert all(score > 0 for _, score in results)


def test_there_are_at_least_30_adversarial_inputs() -> None:
    assert len(ADVERSARIAL) >= 30


@pytest.mark.parametrize("text", ["", "  ", "!!!???", "🦭🐋", "\x00", "-", '"', "()", "*:^"])
def test_text_without_terms_gives_no_query_and_no_results(store: Store, text: str) -> None:
    assert fts5_query(text) is None
    assert not keyword_terms(text)
    assert store.keywords.keyword_search(text, 5) == []


def test_operators_are_searched_as_plain_words(store: Store) -> None:
    assert fts5_query("NEAR(walrus narwhal)") == '"NEAR" OR "walrus" OR "narwhal"'
    assert fts5_query("text:walrus -narwhal") == '"text" OR "walrus" OR "narwhal"'
    assert len(raw_match(store, fts5_query("NOT"))) == 1  # the chunk that contains the word "NOT"
    assert len(store.keywords.keyword_search("-walrus", 5)) == 1  # a minus is not exclusion


def test_terms_are_deduplicated_case_insensitively_and_capped() -> None:
    assert fts5_query("Walrus walrus WALRUS narwhal") == '"Walrus" OR "narwhal"'
    many = keyword_terms(" ".join(f"word{i}" for i in range(1000)))
    assert len(many.words) == MAX_QUERY_TERMS
    long_cjk = keyword_terms("机器学习" * 1000)
    assert 0 < len(long_cjk.cjk_grams) <= MAX_QUERY_TERMS


def test_cjk_runs_are_split_by_length_and_script() -> None:
    terms = keyword_terms("Pythonの使い方 学习 机器学习 猫")
    assert terms.words == ("Python",)
    assert terms.cjk_short == ("学习", "猫")
    assert set(terms.cjk_grams) == {"の使い方", "の使い", "使い方", "机器学习", "机器学", "器学习"}


def test_random_punctuation_soup_never_raises(store: Store) -> None:
    """Deterministic fuzz over FTS5's special characters mixed with words and CJK."""
    pieces = ['"', "'", "(", ")", "*", "^", ":", "-", "+", "{", "}", ",", "\\", "\x00", " ", "NEAR", "AND",
              "OR", "NOT", "walrus", "学习", "天気", "é", "🦭", "%", "_", "[", "]"]
    rng = random.Random(1234)
    for _ in range(300):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(1, 12)))
        expression = fts5_query(text)
        if expression is not None:
            raw_match(store, expression)
        store.keywords.keyword_search(text, 3)


def test_quoting_escapes_embedded_quotes(store: Store, tmp_path: Path) -> None:
    """fts5_phrases is the one place quoting happens; a quote inside a term must be doubled."""
    from edge_embed.store import fts5_phrases

    expression = fts5_phrases(['say "hi"', "walrus"])
    assert expression == '"say ""hi""" OR "walrus"'
    raw_match(store, expression)
