#!/usr/bin/env python
"""Search latency and recall of edge-embed's store, without the model: how fast is the index?

For each corpus size and dimension an index is written once through the Store API and
kept under ``--cache`` (reused by later runs; the vectors too), then timed:

* vector / hybrid: ``edge_embed.search.search`` end to end (candidate lists, fusion,
  per-file grouping, reading the chunk records), k = 10; ``files100``: vector mode,
  ``-k 100 --files`` (per file 1). The query's embedding is NOT included;
* numpy: exact brute force (``matrix @ q`` + argpartition) over the same float32 vectors
  held in RAM, in the same run: ``ratio`` = vector p50 / numpy p50; ``cpu_ratio`` the same
  with each side's CPU time, the figure that holds when other jobs share the machine
  (numpy's BLAS threads all count: run with OPENBLAS_NUM_THREADS=1 to compare one core
  with one core);
* recall@10 / recall@1 of the vector search against numpy's exact top 10 / top 1, and how
  often the planted document (the one the query was made from) is in the top 10;
* bytes per chunk of the index file, the insert rate when it was written, and the peak
  RSS of a process that opens the index and runs the vector queries.

Vectors (``--corpus``): ``synthetic`` = embedding-like (power-law spectrum under a random
rotation, scripts/bench_vectors.py); ``minilm`` = real MiniLM vectors of text found on
this machine (``--model``, 384 dims; ``--sizes`` caps the chunk count). Queries are
perturbed copies of known documents. Chunk texts come from a Zipf vocabulary (synthetic)
or are the real texts (minilm).

Usage (numpy's BLAS needs the machine's own core type, so unset the OpenBLAS overrides):
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python scripts/bench_search.py --json --sizes 100000 --dims 2560
    python scripts/bench_search.py --quick      # 10k x 1024, 30 queries, table output
    python scripts/bench_search.py --corpus minilm --sizes 20000

Writing a 1M x 1024 index takes several minutes and ~5 GB of disk (once).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_vectors import perturbed_queries, write_synthetic  # noqa: E402

from edge_embed.search import SearchOptions, search  # noqa: E402
from edge_embed.store import FileRecord, IndexSettings, NewChunk, Store  # noqa: E402

K = 10
CHUNKS_PER_FILE = 10
WORDS_PER_CHUNK = 80
VOCABULARY = 20_000
FILES_PER_TRANSACTION = 200
WARMUP_QUERIES = 3
SYLLABLES = ("ka", "lo", "mi", "ne", "ru", "ta", "shi", "po", "ve", "zu", "an", "ez", "or", "ix", "um", "ba")
REPO = Path(__file__).resolve().parent.parent


def made_up_vocabulary(rng: np.random.Generator) -> list[str]:
    """Distinct pronounceable words of 2-4 syllables."""
    words: dict[str, None] = {}
    while len(words) < VOCABULARY:
        n = int(rng.integers(2, 5))
        words["".join(rng.choice(SYLLABLES, n))] = None
    return list(words)


def zipf_texts(rng: np.random.Generator, vocabulary: list[str], n: int, words: int) -> list[str]:
    """n chunk texts whose word frequencies follow Zipf's law (p ~ 1/rank), as prose does."""
    weights = 1.0 / np.arange(1, len(vocabulary) + 1)
    texts = []
    for start in range(0, n, 100_000):
        picks = rng.choice(len(vocabulary), size=(min(100_000, n - start), words), p=weights / weights.sum())
        texts.extend(" ".join(vocabulary[i] for i in row) for row in picks)
    return texts


def build_index(db: Path, texts: list[str], vectors: np.ndarray) -> dict[str, float]:
    """Write the corpus through the Store API (chunk ids 1..n); returns timings."""
    started = time.perf_counter()
    n, dims = vectors.shape
    root = db.parent / "corpus"
    with Store.open(db) as store:
        store.meta.init_settings(IndexSettings("bench", "/bench.gguf", 0, "0" * 64, dims, 512, 0))
        root_id = store.files.add_root(root)
        for first_file in range(0, n // CHUNKS_PER_FILE, FILES_PER_TRANSACTION):
            with store.transaction():
                last_file = min(first_file + FILES_PER_TRANSACTION, n // CHUNKS_PER_FILE)
                for f in range(first_file, last_file):
                    write_bench_file(store, root_id, root, f, texts, vectors)
        check_ids_follow_insert_order(store, texts)
        store.maintenance.checkpoint()
    seconds = time.perf_counter() - started
    return {"build_s": seconds, "insert_per_s": n / seconds}


def write_bench_file(store: Store, root_id: int, root: Path, f: int, texts: list[str], vectors: np.ndarray) -> None:
    base = f * CHUNKS_PER_FILE
    chunks = [
        NewChunk(i, i * 8 + 1, i * 8 + 8, None, texts[base + i],
                 hashlib.sha256(f"{base + i}".encode()).hexdigest(), np.asarray(vectors[base + i]))
        for i in range(CHUNKS_PER_FILE)
    ]
    relpath = f"d{f // 100:04d}/f{f:06d}.txt"
    store.files.write_file(FileRecord(root_id, relpath, str(root / relpath), 1, 1, relpath), chunks)


def check_ids_follow_insert_order(store: Store, texts: list[str]) -> None:
    """recall maps numpy row i to chunk id i + 1: make sure that holds."""
    probe = [1, len(texts) // 2, len(texts)]
    records = store.files.chunks_by_id(probe)
    assert all(records[i].text == texts[i - 1] for i in probe), "chunk ids do not follow insert order"


def timed_ms(calls: list[Callable[[], object]]) -> tuple[list[float], list[float]]:
    """(wall, CPU) milliseconds per call, after a few untimed warm-up calls (page cache,
    statements). CPU time is this process's, all threads: on a machine shared with other
    jobs it does not count the time spent waiting for a core, which wall time does."""
    for call in calls[:WARMUP_QUERIES]:
        call()
    wall, cpu = [], []
    for call in calls:
        started, started_cpu = time.perf_counter(), time.process_time()
        call()
        wall.append((time.perf_counter() - started) * 1000)
        cpu.append((time.process_time() - started_cpu) * 1000)
    return wall, cpu


def numpy_top_k(matrix: np.ndarray, query: np.ndarray, k: int = K) -> np.ndarray:
    """Exact top-k row indices by cosine (= dot product of unit vectors), best first."""
    scores = matrix @ query
    top = np.argpartition(-scores, k)[:k]
    return top[np.argsort(-scores[top])]


def keyword_queries(rng: np.random.Generator, vocabulary: list[str], n: int) -> list[str]:
    """2-3 mid-frequency words per query (ranks 50-5000: neither stop words nor hapaxes)."""
    return [" ".join(vocabulary[i] for i in rng.integers(50, 5000, size=int(rng.integers(2, 4)))) for _ in range(n)]


def corpus(args: argparse.Namespace, n: int, dims: int) -> tuple[Path, list[str]]:
    """(vectors .npy, chunk texts) of one configuration, written once under the cache."""
    rng = np.random.default_rng(args.seed)
    if args.corpus == "minilm":
        from bench_minilm import minilm_corpus

        return minilm_corpus(args.cache, args.model, n)
    texts = zipf_texts(rng, made_up_vocabulary(rng), n, args.words)
    return write_synthetic(args.cache, n, dims, args.seed), texts


def bench_one(args: argparse.Namespace, n: int, dims: int) -> dict[str, object]:
    vectors_path, texts = corpus(args, n, dims)
    vectors = np.load(vectors_path)
    n, dims = vectors.shape
    db = args.cache / f"index-{args.corpus}-{n}x{dims}{'' if args.words == WORDS_PER_CHUNK else f'-w{args.words}'}.db"
    meta_path = db.with_suffix(".json")
    if not meta_path.exists():
        db.unlink(missing_ok=True)
        meta_path.write_text(json.dumps(build_index(db, texts, vectors)))
    meta = json.loads(meta_path.read_text())
    queries, planted = perturbed_queries(vectors, args.queries, args.seed)
    rng = np.random.default_rng(args.seed + 2)
    words = [t.split() for t in rng.choice(texts, size=args.queries)]
    query_texts = [" ".join(w[:3]) for w in words]
    numpy_times, numpy_cpu = timed_ms([lambda q=q: numpy_top_k(vectors, q) for q in queries])
    exact = [numpy_top_k(vectors, q) + 1 for q in queries]  # chunk ids are rows + 1
    row: dict[str, object] = {"corpus": args.corpus, "size": n, "dims": dims, "words_per_chunk": args.words}
    with Store.open(db, create=False) as store:
        if args.two_stage:
            store.vectors.exact_scan_max_floats = store.vectors.two_stage_min_dims = 0
        row["path"] = "exact" if store.vectors.vector_ranking(queries[0]).exact else "two-stage"

        def run(mode: str, k: int = K, per_file: int = 2) -> tuple[tuple[list[float], list[float]], list[list[int]]]:
            options = SearchOptions(mode=mode, k=k, per_file=per_file)
            found: list[list[int]] = []
            calls = [
                lambda q=q, t=t: found.append([h.chunk.id for h in search(store, t, options, embed_query=lambda _: q)])
                for q, t in zip(queries, query_texts)
            ]
            return timed_ms(calls), found[WARMUP_QUERIES:]

        (vector_times, vector_cpu), _ = run("vector")
        _, vector_found = run("vector", per_file=0)
        (hybrid_times, _), _ = run("hybrid")
        (files_times, _), _ = run("vector", k=100, per_file=1)
    row.update(percentiles("vector", vector_times))
    row.update(percentiles("numpy", numpy_times))
    row["ratio"] = round(row["vector_p50_ms"] / row["numpy_p50_ms"], 3)
    row["vector_cpu_p50_ms"] = round(statistics.median(vector_cpu), 2)
    row["numpy_cpu_p50_ms"] = round(statistics.median(numpy_cpu), 2)
    row["cpu_ratio"] = round(row["vector_cpu_p50_ms"] / row["numpy_cpu_p50_ms"], 3)
    row["recall_at_10"] = float(np.mean([len(set(e) & set(f)) / K for e, f in zip(exact, vector_found)]))
    row["recall_at_1"] = float(np.mean([f[:1] == [e[0]] for e, f in zip(exact, vector_found)]))
    row["planted_in_top10"] = float(np.mean([p + 1 in f for p, f in zip(planted, vector_found)]))
    row.update(percentiles("hybrid", hybrid_times))
    row.update(percentiles("files100", files_times))
    row["bytes_per_chunk"] = round(db.stat().st_size / n)
    row["insert_per_s"] = round(meta["insert_per_s"])
    row.update(query_rss_mb(db, queries[:20], args.two_stage))
    return row


def percentiles(name: str, times: list[float]) -> dict[str, float]:
    return {f"{name}_p50_ms": round(statistics.median(times), 2), f"{name}_p95_ms": round(float(np.percentile(times, 95)), 2)}


def _rss_child(db: str, queries: np.ndarray, two_stage: bool, out: multiprocessing.Queue) -> None:
    with Store.open(db, create=False) as store:
        if two_stage:
            store.vectors.exact_scan_max_floats = store.vectors.two_stage_min_dims = 0
        for q in queries:
            search(store, "x", SearchOptions(mode="vector"), embed_query=lambda _, q=q: q)
    # VmHWM, not ru_maxrss: the latter keeps the parent's size from before the exec
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
    out.put({key: int(status[key].split()[0]) / 1024 for key in ("VmHWM", "RssAnon", "RssFile")})


def query_rss_mb(db: Path, queries: np.ndarray, two_stage: bool) -> dict[str, float]:
    """Memory of a fresh process that opens the index and runs vector queries (MB): the
    peak RSS, and after the queries its own memory (anon) apart from the index file's
    pages it has mapped (file: the OS's page cache, shared and reclaimable; SQLite reads
    the index through mmap, see store/schema.py)."""
    context = multiprocessing.get_context("spawn")
    out = context.Queue()
    child = context.Process(target=_rss_child, args=(str(db), queries, two_stage, out))
    child.start()
    memory = out.get()
    child.join()
    return {
        "query_peak_rss_mb": round(memory["VmHWM"], 1),
        "query_rss_anon_mb": round(memory["RssAnon"], 1),
        "query_rss_file_mb": round(memory["RssFile"], 1),
    }


def print_table(rows: list[dict[str, object]]) -> None:
    keys = list(rows[0])
    print("| " + " | ".join(keys) + " |")
    print("|" + " ---: |" * len(keys))
    for row in rows:
        print("| " + " | ".join(str(row[key]) for key in keys) + " |")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000", help="comma-separated chunk counts")
    parser.add_argument("--dims", default="1024,2560", help="comma-separated dimensions (synthetic)")
    parser.add_argument("--queries", type=int, default=100, help="timed queries per mode")
    parser.add_argument("--quick", action="store_true", help="10k chunks x 1024 dims, 30 queries")
    parser.add_argument("--corpus", choices=("synthetic", "minilm"), default="synthetic")
    parser.add_argument("--model", type=Path, default=REPO.parent / "shared/models/minilm-q8_0.gguf")
    parser.add_argument("--cache", type=Path, default=REPO / ".bench", help="where vectors and indexes are kept")
    parser.add_argument("--words", type=int, default=WORDS_PER_CHUNK, help="words per synthetic chunk text (keyword index size)")
    parser.add_argument("--two-stage", action="store_true", help="use the two-stage vector path whatever the size")
    parser.add_argument("--json", action="store_true", help="one JSON object per line and configuration")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.dims, args.queries = "10000", "1024", 30
    args.sizes = [int(s) for s in args.sizes.split(",")]
    args.dims = [int(d) for d in args.dims.split(",")] if args.corpus == "synthetic" else [384]
    return args


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    rows = []
    for n in args.sizes:
        for dims in args.dims:
            row = bench_one(args, n, dims)
            rows.append(row)
            if args.json:
                print(json.dumps(row), flush=True)
    if not args.json:
        print_table(rows)


if __name__ == "__main__":
    main(sys.argv[1:])
