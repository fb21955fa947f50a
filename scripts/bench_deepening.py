"""How the cost of a query grows with what it returns: `-k 100 --files` against `-k 10`.

Issue 7 item 16: on a 3,000-chunk index `query --mode vector -k 100 --files` took 3.5x as
long as `-k 10`. Builds an index of N chunks (random unit vectors, 60-word texts, 10 chunks
per file), then times search() in vector mode, alternating the two shapes (A B B A) in the
same run, and prints the medians, their ratio, and how many chunk records each read.

    python scripts/bench_deepening.py [--chunks 3000] [--dims 1024] [--runs 40]
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from edge_embed.search import SearchOptions, search
from edge_embed.store import FileRecord, IndexSettings, NewChunk, Store

WORDS = "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november".split()


def build(path: Path, chunks: int, dims: int, rng: np.random.Generator) -> Store:
    store = Store.open(path)
    store.meta.init_settings(IndexSettings("bench", "/bench.gguf", 1, "b" * 64, dims, 256, 0))
    root = path.parent / "notes"
    root_id = store.files.add_root(root)
    vectors = rng.standard_normal((chunks, dims)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    with store.transaction():
        for file_no, start in enumerate(range(0, chunks, 10)):
            new = []
            for seq, i in enumerate(range(start, min(start + 10, chunks))):
                text = " ".join(rng.choice(WORDS, 60))
                new.append(NewChunk(seq, seq * 5 + 1, seq * 5 + 5, None, text, hashlib.sha256(f"{i}".encode()).hexdigest(), vectors[i]))
            relpath = f"f{file_no}.md"
            store.files.write_file(FileRecord(root_id, relpath, str(root / relpath), 1, 1, relpath), new)
    return store


class Counting:
    """Counts the chunk records a search reads (texts included)."""

    def __init__(self, store: Store) -> None:
        self.store, self.records = store, 0

    def chunks_by_id(self, ids):
        ids = list(ids)
        self.records += len(ids)
        return self.store.files.chunks_by_id(ids)

    def __getattr__(self, name):
        return getattr(self.store, name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=3000)
    parser.add_argument("--dims", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=40)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    shapes = {"-k 10": SearchOptions(mode="vector", k=10, per_file=0), "-k 100 --files": SearchOptions(mode="vector", k=100, per_file=1)}
    with tempfile.TemporaryDirectory() as tmp:
        store = build(Path(tmp) / "index.db", args.chunks, args.dims, rng)
        times: dict[str, list[float]] = {name: [] for name in shapes}
        records: dict[str, int] = {}
        for run in range(args.runs):
            query = rng.standard_normal(args.dims).astype(np.float32)
            query /= np.linalg.norm(query)
            order = list(shapes) if run % 2 == 0 else list(reversed(shapes))
            for name in order:
                counting = Counting(store)
                started = time.perf_counter()
                search(counting, "q", shapes[name], embed_query=lambda _text: query)
                times[name].append((time.perf_counter() - started) * 1000)
                records[name] = counting.records
        store.close()
    medians = {name: statistics.median(values) for name, values in times.items()}
    for name in shapes:
        print(f"{name:>16}: p50 {medians[name]:7.2f} ms, records read {records[name]}")
    print(f"ratio -k 100 --files / -k 10: {medians['-k 100 --files'] / medians['-k 10']:.2f}x")


if __name__ == "__main__":
    main()
