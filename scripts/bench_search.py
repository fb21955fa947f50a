#!/usr/bin/env python
"""Search latency of edge-embed's store, without the model: how fast is the index itself?

For each corpus size and dimension a synthetic index is written through the Store API
(random unit vectors; chunk texts drawn from a Zipf-distributed vocabulary of made-up
words, so BM25 sees realistic term statistics), then timed:

* vector / keyword / hybrid: ``edge_embed.search.search`` end to end (candidate lists,
  fusion, per-file grouping, reading the chunk records), with random unit query vectors,
  so the query's embedding is NOT included;
* knn: the store's KNN alone (``Store.vector_search`` at the candidate depth);
* numpy: exact brute force (``matrix @ q`` + argpartition) over the same vectors, in RAM,
  in the same run: the ``ratio`` column is each mode's median over numpy's median;
* recall@10 of the store's KNN against numpy's exact top 10.

Usage:
    python scripts/bench_search.py              # 10k and 100k chunks x 1024 and 2560 dims
    python scripts/bench_search.py --quick      # 10k x 1024 only, fewer queries
    python scripts/bench_search.py --sizes 10000 --dims 1024,2560 --queries 100

The 100k x 2560 index takes about 1.1 GB of disk and a few minutes to write.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_embed.search import CANDIDATE_FACTOR, MIN_CANDIDATES, SearchOptions, search
from edge_embed.store import IndexSettings, NewChunk, Store

K = 10
CHUNKS_PER_FILE = 10
WORDS_PER_CHUNK = 80
VOCABULARY = 20_000
FILES_PER_TRANSACTION = 200
WARMUP_QUERIES = 3
SYLLABLES = ("ka", "lo", "mi", "ne", "ru", "ta", "shi", "po", "ve", "zu", "an", "ez", "or", "ix", "um", "ba")


@dataclass(frozen=True)
class Row:
    chunks: int
    dims: int
    mode: str
    median_ms: float
    p95_ms: float
    ratio: float | None = None
    recall: float | None = None


def made_up_vocabulary(rng: np.random.Generator) -> list[str]:
    """Distinct pronounceable words of 2-4 syllables."""
    words: dict[str, None] = {}
    while len(words) < VOCABULARY:
        n = int(rng.integers(2, 5))
        words["".join(rng.choice(SYLLABLES, n))] = None
    return list(words)


def zipf_texts(rng: np.random.Generator, vocabulary: list[str], n: int) -> list[str]:
    """n chunk texts whose word frequencies follow Zipf's law (p ~ 1/rank), as prose does."""
    weights = 1.0 / np.arange(1, len(vocabulary) + 1)
    picks = rng.choice(len(vocabulary), size=(n, WORDS_PER_CHUNK), p=weights / weights.sum())
    return [" ".join(vocabulary[i] for i in row) for row in picks]


def unit_rows(rng: np.random.Generator, n: int, dims: int) -> np.ndarray:
    rows = rng.standard_normal((n, dims), dtype=np.float32)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    return rows


def build_index(db: Path, root: Path, texts: list[str], vectors: np.ndarray) -> float:
    """Write the corpus through the Store API; returns seconds taken. Chunk ids are 1..n."""
    started = time.perf_counter()
    n, dims = vectors.shape
    with Store.open(db) as store:
        store.init_settings(IndexSettings("bench", "/bench.gguf", 0, "0" * 64, dims, 512, 0))
        root_id = store.add_root(root)
        for first_file in range(0, n // CHUNKS_PER_FILE, FILES_PER_TRANSACTION):
            with store.transaction():
                last_file = min(first_file + FILES_PER_TRANSACTION, n // CHUNKS_PER_FILE)
                for f in range(first_file, last_file):
                    write_bench_file(store, root_id, root, f, texts, vectors)
        check_ids_follow_insert_order(store, texts)
    return time.perf_counter() - started


def write_bench_file(store: Store, root_id: int, root: Path, f: int, texts: list[str], vectors: np.ndarray) -> None:
    base = f * CHUNKS_PER_FILE
    chunks = [
        NewChunk(i, i * 8 + 1, i * 8 + 8, None, texts[base + i],
                 hashlib.sha256(f"{base + i}".encode()).hexdigest(), vectors[base + i])
        for i in range(CHUNKS_PER_FILE)
    ]
    relpath = f"d{f // 100:04d}/f{f:06d}.txt"
    store.write_file(root_id, relpath, str(root / relpath), 1, 1, relpath, chunks)


def check_ids_follow_insert_order(store: Store, texts: list[str]) -> None:
    """recall@10 maps numpy row i to chunk id i + 1: make sure that holds."""
    probe = [1, len(texts) // 2, len(texts)]
    records = store.chunks_by_id(probe)
    assert all(records[i].text == texts[i - 1] for i in probe), "chunk ids do not follow insert order"


def timed_ms(calls: list[Callable[[], object]]) -> list[float]:
    """Milliseconds per call, after a few untimed warm-up calls (page cache, statements)."""
    for call in calls[:WARMUP_QUERIES]:
        call()
    times = []
    for call in calls:
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    return times


def numpy_top_k(matrix: np.ndarray, query: np.ndarray, k: int = K) -> np.ndarray:
    """Exact top-k row indices by cosine (= dot product of unit vectors), best first."""
    scores = matrix @ query
    top = np.argpartition(-scores, k)[:k]
    return top[np.argsort(-scores[top])]


def keyword_queries(rng: np.random.Generator, vocabulary: list[str], n: int) -> list[str]:
    """2-3 mid-frequency words per query (ranks 50-5000: neither stop words nor hapaxes)."""
    return [" ".join(vocabulary[i] for i in rng.integers(50, 5000, size=int(rng.integers(2, 4)))) for _ in range(n)]


def bench_one(n: int, dims: int, queries: int, workdir: Path, rng: np.random.Generator) -> list[Row]:
    vocabulary = made_up_vocabulary(rng)
    texts = zipf_texts(rng, vocabulary, n)
    vectors = unit_rows(rng, n, dims)
    db = workdir / f"bench-{n}-{dims}.db"
    seconds = build_index(db, workdir / "corpus", texts, vectors)
    size_mb = db.stat().st_size / 1e6
    print(f"  built {n:,} x {dims} in {seconds:.0f} s ({n / seconds:,.0f} chunks/s), {size_mb:,.0f} MB", flush=True)
    query_vecs = unit_rows(rng, queries, dims)
    query_texts = keyword_queries(rng, vocabulary, queries)
    depth = max(K * CANDIDATE_FACTOR, MIN_CANDIDATES)
    rows = []
    with Store.open(db, create=False) as store:
        numpy_times = timed_ms([lambda q=q: numpy_top_k(vectors, q) for q in query_vecs])
        numpy_ms = statistics.median(numpy_times)
        for mode in ("vector", "keyword", "hybrid"):
            options = SearchOptions(mode=mode, k=K)
            calls = [
                lambda q=q, t=t: search(store, t, options, embed_query=lambda _text: q)
                for q, t in zip(query_vecs, query_texts)
            ]
            rows.append(summarise(n, dims, mode, timed_ms(calls), numpy_ms))
        knn = timed_ms([lambda q=q: store.vector_search(q, depth) for q in query_vecs])
        rows.append(summarise(n, dims, f"knn k={depth}", knn, numpy_ms, recall_at_10(store, vectors, query_vecs)))
        rows.append(summarise(n, dims, "numpy exact", numpy_times, numpy_ms))
    db.unlink()
    for suffix in ("-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    return rows


def recall_at_10(store: Store, vectors: np.ndarray, query_vecs: np.ndarray) -> float:
    found = 0
    for q in query_vecs:
        exact = {int(i) + 1 for i in numpy_top_k(vectors, q)}
        found += len(exact & {chunk_id for chunk_id, _ in store.vector_search(q, K)})
    return found / (K * len(query_vecs))


def summarise(n: int, dims: int, mode: str, times: list[float], numpy_ms: float, recall: float | None = None) -> Row:
    median = statistics.median(times)
    return Row(n, dims, mode, median, float(np.percentile(times, 95)), median / numpy_ms, recall)


def print_table(rows: list[Row]) -> None:
    print("\n| chunks | dims | mode | median ms | p95 ms | ratio vs numpy | recall@10 |")
    print("| ---: | ---: | --- | ---: | ---: | ---: | ---: |")
    for r in rows:
        recall = f"{r.recall:.3f}" if r.recall is not None else ""
        ratio = f"{r.ratio:.1f}x" if r.ratio is not None else ""
        print(f"| {r.chunks:,} | {r.dims} | {r.mode} | {r.median_ms:.2f} | {r.p95_ms:.2f} | {ratio} | {recall} |")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000", help="comma-separated chunk counts")
    parser.add_argument("--dims", default="1024,2560", help="comma-separated dimensions")
    parser.add_argument("--queries", type=int, default=100, help="timed queries per mode")
    parser.add_argument("--quick", action="store_true", help="10k chunks x 1024 dims, 30 queries")
    parser.add_argument("--workdir", type=Path, default=None, help="where the temporary indexes go")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.dims, args.queries = "10000", "1024", 30
    args.sizes = [int(s) for s in args.sizes.split(",")]
    args.dims = [int(d) for d in args.dims.split(",")]
    return args


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    rng = np.random.default_rng(args.seed)
    workdir = Path(tempfile.mkdtemp(prefix="edge-embed-bench-", dir=args.workdir))
    rows: list[Row] = []
    try:
        for n in args.sizes:
            for dims in args.dims:
                print(f"{n:,} chunks x {dims} dims ...", flush=True)
                rows.extend(bench_one(n, dims, args.queries, workdir, rng))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        if rows:
            print_table(rows)


if __name__ == "__main__":
    main(sys.argv[1:])
