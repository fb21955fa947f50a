#!/usr/bin/env python
"""Short CJK keyword terms: the bigram index against the substring scan it replaced.

A synthetic index of generated Chinese chunks is written through the Store API (texts
drawn from a Zipf-distributed vocabulary of made-up 2-character words, with commas and
full stops cutting them into runs; tiny random vectors, since no vector is searched), then
each query is timed two ways in the same run, in alternating order:

* bigram: ``store.keywords.keyword_search`` as it is now, 1-2 character CJK terms looked up in the
  ``chunks_cjk_bigrams`` FTS5 table;
* scan: the previous implementation, reimplemented here as the baseline: every CJK chunk
  tested with ``instr()``, the matching texts loaded into Python, the term counted and
  scored with BM25's idf and saturation, the top k kept.

Queries are 2-character words at three frequencies (rare, mid, common: ranks 2000-4000,
100-1000, 1-10) and single characters. Before timing, the script checks that both ways
find the same set of matching chunks for each query (with k above the number of matches).

Usage:
    python scripts/bench_cjk.py                     # 50,000 chunks, 30 queries per kind
    python scripts/bench_cjk.py --chunks 5000 --queries 10
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import apsw
import numpy as np

from edge_embed.store import FileRecord, IndexSettings, NewChunk, Store, keyword_terms

K = 10
DIMS = 4
VOCABULARY = 8_000
WORDS_PER_CHUNK = 60  # 120 CJK characters, about a paragraph
WORDS_PER_RUN = (3, 9)  # a comma or full stop after this many words
CHUNKS_PER_FILE = 10
FILES_PER_TRANSACTION = 200
WARMUP_QUERIES = 3
BM25_K1 = 1.2  # the baseline's saturation constant (FTS5's)
QUERY_KINDS = {"2 chars, rare": (2000, 4000), "2 chars, mid": (100, 1000), "2 chars, common": (0, 10)}


def made_up_vocabulary(rng: np.random.Generator) -> list[str]:
    """Distinct 2-character words of common Han characters (U+4E00 to U+62FF)."""
    words: dict[str, None] = {}
    while len(words) < VOCABULARY:
        words["".join(chr(int(c)) for c in rng.integers(0x4E00, 0x6300, size=2))] = None
    return list(words)


def zipf_texts(rng: np.random.Generator, vocabulary: list[str], n: int) -> list[str]:
    """n chunk texts whose word frequencies follow Zipf's law, cut into runs by punctuation."""
    weights = 1.0 / np.arange(1, len(vocabulary) + 1)
    picks = rng.choice(len(vocabulary), size=(n, WORDS_PER_CHUNK), p=weights / weights.sum())
    texts = []
    for row in picks:
        parts, start = [], 0
        while start < len(row):
            end = start + int(rng.integers(*WORDS_PER_RUN))
            parts.append("".join(vocabulary[i] for i in row[start:end]) + ("，" if end < len(row) else "。"))
            start = end
        texts.append("".join(parts))
    return texts


def build_index(db: Path, root: Path, texts: list[str], rng: np.random.Generator) -> float:
    """Write the corpus through the Store API; returns seconds taken."""
    started = time.perf_counter()
    vectors = rng.standard_normal((len(texts), DIMS)).astype(np.float32)
    with Store.open(db) as store:
        store.meta.init_settings(IndexSettings("bench", "/bench.gguf", 0, "0" * 64, DIMS, 512, 0))
        root_id = store.files.add_root(root)
        files = len(texts) // CHUNKS_PER_FILE
        for first in range(0, files, FILES_PER_TRANSACTION):
            with store.transaction():
                for f in range(first, min(first + FILES_PER_TRANSACTION, files)):
                    base = f * CHUNKS_PER_FILE
                    chunks = [
                        NewChunk(i, i + 1, i + 1, None, texts[base + i],
                                 hashlib.sha256(f"{base + i}".encode()).hexdigest(), vectors[base + i])
                        for i in range(CHUNKS_PER_FILE)
                    ]
                    relpath = f"d{f // 100:04d}/f{f:06d}.txt"
                    store.files.write_file(FileRecord(root_id, relpath, str(root / relpath), 1, 1, relpath), chunks)
    return time.perf_counter() - started


def scan_keyword_search(conn: apsw.Connection, text: str, k: int) -> list[tuple[int, float]]:
    """The previous short-term path (before the bigram table), as keyword_search ran it."""
    short = keyword_terms(text).cjk_short
    any_term = " OR ".join(["instr(c.text, ?) > 0"] * len(short))
    rows = conn.execute(
        f"SELECT c.id, c.text FROM chunks_cjk t JOIN chunks c ON c.id = t.rowid WHERE ({any_term})", short
    ).fetchall()
    total = int(conn.execute("SELECT count(*) FROM chunks_cjk").fetchall()[0][0])
    scores = [0.0] * len(rows)
    for term in short:
        frequencies = [chunk_text.count(term) for _, chunk_text in rows]
        hits = sum(1 for tf in frequencies if tf)
        idf = max(math.log((total - hits + 0.5) / (hits + 0.5)), 1e-6)
        for i, tf in enumerate(frequencies):
            scores[i] += idf * tf * (BM25_K1 + 1) / (tf + BM25_K1)
    ranked = sorted(zip((row[0] for row in rows), scores), key=lambda item: (-item[1], item[0]))
    return ranked[:k]


def queries_by_kind(rng: np.random.Generator, vocabulary: list[str], n: int) -> dict[str, list[str]]:
    kinds = {
        kind: [vocabulary[i] for i in rng.integers(low, high, size=n)] for kind, (low, high) in QUERY_KINDS.items()
    }
    kinds["1 char"] = [vocabulary[i][0] for i in rng.integers(100, 1000, size=n)]
    return kinds


def check_same_matches(store: Store, conn: apsw.Connection, queries: list[str]) -> None:
    """Both ways must find the same chunks: all of them, with k above any match count."""
    for query in queries:
        scan = {chunk_id for chunk_id, _ in scan_keyword_search(conn, query, 10**9)}
        bigram = {chunk_id for chunk_id, _ in store.keywords.keyword_search(query, max(len(scan) + 1, K))}
        assert scan == bigram, f"{query}: scan found {len(scan)}, bigram {len(bigram)}"


def timed_pair(calls: list[tuple[Callable[[], object], Callable[[], object]]]) -> tuple[list[float], list[float]]:
    """Milliseconds per call of each side, alternating A B B A so drift hits both alike."""
    for a, b in calls[:WARMUP_QUERIES]:
        a(), b()
    times: tuple[list[float], list[float]] = ([], [])
    for n, pair in enumerate(calls):
        order = (0, 1) if n % 2 == 0 else (1, 0)
        for side in order:
            started = time.perf_counter()
            pair[side]()
            times[side].append((time.perf_counter() - started) * 1000)
    return times


def table_bytes(conn: apsw.Connection, table: str) -> int:
    """Bytes of a table with its FTS5 shadow tables, where FTS5 keeps its index."""
    names = [table] + [f"{table}_{shadow}" for shadow in ("data", "idx", "docsize", "config")]
    rows = conn.execute(
        "SELECT sum(pgsize) FROM dbstat WHERE name IN (SELECT value FROM json_each(?))", (json.dumps(names),)
    )
    return int(rows.fetchall()[0][0] or 0)


def run(chunks: int, queries: int) -> None:
    rng = np.random.default_rng(2026)
    vocabulary = made_up_vocabulary(rng)
    texts = zipf_texts(rng, vocabulary, chunks)
    with tempfile.TemporaryDirectory() as workdir:
        db = Path(workdir) / "cjk.db"
        seconds = build_index(db, Path(workdir) / "corpus", texts, rng)
        print(f"built {chunks:,} chunks ({sum(map(len, texts)) / 1e6:.1f}M characters) in {seconds:.0f} s, "
              f"{db.stat().st_size / 1e6:.0f} MB", flush=True)
        with Store.open(db, create=False) as store:
            conn = store._conn  # noqa: SLF001 - the baseline runs the old SQL on the same file
            tables = ("chunks", "chunks_fts", "chunks_cjk", "chunks_cjk_bigrams")
            sizes = {table: table_bytes(conn, table) / 1e6 for table in tables}
            print("table MB: " + ", ".join(f"{t} {mb:.1f}" for t, mb in sizes.items()))
            kinds = queries_by_kind(rng, vocabulary, queries)
            print("| query | matching chunks (median) | scan median ms | bigram median ms | speed-up |")
            print("| --- | ---: | ---: | ---: | ---: |")
            for kind, texts_of_kind in kinds.items():
                check_same_matches(store, conn, texts_of_kind[:5])
                matches = statistics.median(len(scan_keyword_search(conn, q, 10**9)) for q in texts_of_kind)
                scan, bigram = timed_pair([
                    (lambda q=q: scan_keyword_search(conn, q, K), lambda q=q: store.keywords.keyword_search(q, K))
                    for q in texts_of_kind
                ])
                scan_ms, bigram_ms = statistics.median(scan), statistics.median(bigram)
                print(f"| {kind} | {matches:,.0f} | {scan_ms:.2f} | {bigram_ms:.2f} | {scan_ms / bigram_ms:.0f}x |",
                      flush=True)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chunks", type=int, default=50_000, help="generated CJK chunks")
    parser.add_argument("--queries", type=int, default=30, help="timed queries per kind")
    args = parser.parse_args(argv)
    run(args.chunks, args.queries)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
