#!/usr/bin/env python3
"""Edit history vs a fresh index: file size, vec0 chunks and KNN time, before and after compact.

Part 1, edit cycles (tiny test model, real pipeline). A corpus of FILES notes of
PARAGRAPHS paragraphs is indexed, then edited CYCLES times: each cycle rewrites one
paragraph of a random note and runs ``Indexer.run`` (auto-compaction off).
This is done twice in the same run, with the in-place write path and with the one before
it (every chunk of a changed file deleted and inserted again, ``RewriteAllStore``); each
edited index is then compacted, and a fresh index of the final content is built. Measured:
file size, vec0 chunks of slots, and the p50 of QUERIES KNN searches (k=10, random unit
queries) through ``store.vectors.vector_search``.

Part 2, what compaction costs (random vectors of --dims, written straight to the store):
VECTORS vectors in files of 1,000, then 3 of every 4 chunks deleted, spread over all
files (as a long edit history leaves them); compaction time, file size and KNN p50
before and after.

    python scripts/bench_compact.py                                  # both parts, defaults
    python scripts/bench_compact.py --cycles 1000 --vectors 40000    # a longer history, a bigger index
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from edge_embed.indexer import IndexOptions, Indexer
from edge_embed.runtime.loader import ModelHandle, prepare_model
from edge_embed.runtime.plan import RuntimeSettings
from edge_embed.store import FileRecord, IndexSettings, NewChunk, Store
from edge_embed.store.files import Files
from edge_embed.store.part import transaction
from edge_embed.store.rows import delete_file_rows
from edge_embed.testing import write_tiny_qwen3

WORDS = "apple river stone cloud garden kernel budget travel music recipe backup python lantern".split()


def paragraph(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(7)) + "."


def write_corpus(root: Path, files: int, paragraphs: int, rng: random.Random) -> list[list[str]]:
    notes = [[paragraph(rng) for _ in range(paragraphs)] for _ in range(files)]
    for number, note in enumerate(notes):
        write_note(root, number, note)
    return notes


def write_note(root: Path, number: int, note: list[str]) -> Path:
    path = root / f"note-{number:03d}.txt"
    path.write_text("\n\n".join(note) + "\n")
    return path


class RewriteAllFiles(Files):
    """The write path before in-place writes: every chunk of a changed file deleted, then inserted."""

    def write_file(self, record, chunks):
        with transaction(self._conn):
            state = self.file_states(record.root_id).get(record.relpath)
            if state is not None:
                delete_file_rows(self._conn, state.id)
            return super().write_file(record, chunks)


class RewriteAllStore(Store):
    """A Store whose ``files`` writes the old way."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.files = RewriteAllFiles(self._conn, self.path, self.meta)


def index(store: Store, model: ModelHandle, root: Path) -> None:
    options = IndexOptions(chunk_tokens=128, overlap=0, auto_compact=None)
    Indexer(store, model, options).run([root])


def knn_p50_ms(store: Store, dims: int, queries: int) -> float:
    rng = np.random.default_rng(0)
    timings = []
    for _ in range(queries):
        query = rng.standard_normal(dims).astype(np.float32)
        started = time.perf_counter()
        store.vectors.vector_search(query / np.linalg.norm(query), 10)
        timings.append((time.perf_counter() - started) * 1000)
    return statistics.median(timings)


def measure(label: str, store: Store, dims: int, queries: int) -> dict[str, object]:
    store.maintenance.checkpoint()
    usage = store.maintenance.space_usage()
    return {
        "index": label,
        "file MB": usage.database_bytes / 1e6,
        "vectors": usage.vectors,
        "vec0 chunks": usage.vector_chunks,
        "vector slots": usage.vector_slots,
        "KNN p50 ms": knn_p50_ms(store, dims, queries),
    }


def edit_cycles(store: Store, model: ModelHandle, root: Path, notes: list[list[str]], cycles: int, rng: random.Random) -> None:
    for _ in range(cycles):
        number = rng.randrange(len(notes))
        notes[number][rng.randrange(len(notes[number]))] = paragraph(rng)
        write_note(root, number, notes[number])
        index(store, model, root)


def edit_history(args: argparse.Namespace, work: Path, model: ModelHandle) -> list[dict[str, object]]:
    """Part 1: the same edits through both write paths, then a fresh index of the result."""
    rows = []
    for label, store_class in (("in place", Store), ("rewrite all (before)", RewriteAllStore)):
        rng = random.Random(1)
        root = work / store_class.__name__
        root.mkdir()
        notes = write_corpus(root, args.files, args.paragraphs, rng)
        with store_class.open(work / f"{store_class.__name__}.db") as store:
            index(store, model, root)
            dims = store.meta.settings().dims
            if not rows:
                rows.append(measure("fresh, before the edits", store, dims, args.queries))
            started = time.perf_counter()
            edit_cycles(store, model, root, notes, args.cycles, rng)
            elapsed = time.perf_counter() - started
            rows.append(measure(f"{label}: after {args.cycles} edit cycles ({elapsed:.0f} s)", store, dims, args.queries))
            result = store.maintenance.compact()
            rows.append(measure(f"{label}: then compacted ({result.elapsed_s:.2f} s)", store, dims, args.queries))
    fresh_root = work / "fresh"
    fresh_root.mkdir()
    for number, note in enumerate(notes):
        write_note(fresh_root, number, note)
    with Store.open(work / "fresh.db") as fresh:
        index(fresh, model, fresh_root)
        rows.append(measure("fresh index of the final content", fresh, dims, args.queries))
    return rows


def compaction_cost(args: argparse.Namespace, work: Path) -> list[dict[str, object]]:
    """Part 2: a big fragmented index of random vectors, compacted."""
    rng = np.random.default_rng(2)
    settings = IndexSettings("random", "/random.gguf", 1, "c" * 64, args.dims, 512, 51)
    with Store.open(work / "random.db") as store:
        store.meta.init_settings(settings)
        root_id = store.files.add_root(work)
        files = range(0, args.vectors, 1000)
        for start in files:
            vectors = rng.standard_normal((1000, args.dims)).astype(np.float32)
            store.files.write_file(FileRecord(root_id, f"f{start}", str(work / f"f{start}"), 1, 1, "x"), random_chunks(vectors, keep=range(1000)))
        for start in files:  # the same files, 1 chunk in 4 kept: the kept rows pin every chunk of slots
            store.files.write_file(FileRecord(root_id, f"f{start}", str(work / f"f{start}"), 1, 1, "y"), random_chunks(None, keep=range(0, 1000, 4), dims=args.dims))
        before = measure(f"{args.vectors} x {args.dims}-dim vectors, 3 in 4 deleted", store, args.dims, args.queries)
        result = store.maintenance.compact()
        after = measure(f"then compacted ({result.elapsed_s:.2f} s)", store, args.dims, args.queries)
    return [before, after]


def random_chunks(vectors: np.ndarray | None, keep: range, dims: int = 0) -> list[NewChunk]:
    """Chunks "chunk N" (their text is their identity); vectors only matter for new ones."""
    return [
        NewChunk(seq, seq, seq, None, f"chunk {n}", f"{n:064x}", vectors[n] if vectors is not None else np.zeros(dims, np.float32))
        for seq, n in enumerate(keep)
    ]


def print_table(title: str, rows: list[dict[str, object]]) -> None:
    print(title)
    print("| " + " | ".join(rows[0]) + " |")
    print("| --- " * len(rows[0]) + "|")
    for row in rows:
        print("| " + " | ".join(f"{value:.2f}" if isinstance(value, float) else str(value) for value in row.values()) + " |")
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=100)
    parser.add_argument("--paragraphs", type=int, default=60)
    parser.add_argument("--cycles", type=int, default=200)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--vectors", type=int, default=20000)
    parser.add_argument("--dims", type=int, default=1024)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model = prepare_model(str(write_tiny_qwen3(work / "tiny.gguf").path), RuntimeSettings(ctx=2048, threads=1))
        try:
            history = edit_history(args, work, model)
        finally:
            model.close()
        cost = compaction_cost(args, work)
    print_table(f"Part 1: {args.files} notes x {args.paragraphs} paragraphs, {args.cycles} edit cycles, tiny model", history)
    print_table(f"Part 2: compaction cost, {args.dims} dims", cost)


if __name__ == "__main__":
    main()
