#!/usr/bin/env python
"""What the kept read connection saves per search through ``Index`` (issue 16 item 5).

Before, every ``Index.search`` opened its own Store (sqlite-vec loaded, WAL set, identity
and schema read) and closed it; now each thread keeps one (``store/readers.py``). Both
paths run in the same process on the same index, the queries interleaved so that a busy
machine slows both alike:

* ``kept``: ``Index.search`` as it is (this thread's Store, opened once);
* ``per_search``: the same Index code with ``reading()`` handing out a new Store per
  search, as ``Index.store()`` does (the path before).

Reported per mode (keyword; vector with a fixed query vector, so no model runs): p50 wall
and CPU ms per search of each path and ``ratio`` = per_search / kept (p50 wall; and
``cpu_ratio`` the same with CPU time, the figure that holds on a shared machine).

Usage:
    python scripts/bench_read_connection.py                 # 2,000 chunks x 256 dims, 200 queries
    python scripts/bench_read_connection.py --chunks 20000 --queries 500
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_search import build_index, keyword_queries, made_up_vocabulary, timed_ms, zipf_texts  # noqa: E402

from edge_embed.api import Index  # noqa: E402
from edge_embed.search import SearchOptions  # noqa: E402
from edge_embed.store import Store  # noqa: E402


class OpenPerSearch(Index):
    """The read path before: a new Store for every search, closed after it."""

    def reading(self) -> AbstractContextManager[Store]:
        return self.store()


def unit_rows(rng: np.random.Generator, n: int, dims: int) -> np.ndarray:
    vectors = rng.standard_normal((n, dims)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def interleaved(kept: list[Callable[[], object]], before: list[Callable[[], object]]) -> tuple[list[float], ...]:
    """(kept wall, kept CPU, before wall, before CPU) ms per call, the two paths alternating."""
    calls = [call for pair in zip(kept, before) for call in pair]
    wall, cpu = timed_ms(calls)
    return wall[0::2], cpu[0::2], wall[1::2], cpu[1::2]


def bench_mode(db: Path, mode: str, queries: list[str], vector: np.ndarray) -> dict[str, object]:
    options = SearchOptions(mode=mode, k=10)
    embed = (lambda _text: vector) if mode != "keyword" else None
    with Index.open(db) as kept, OpenPerSearch.open(db) as before:
        kept_calls = [lambda q=q: kept.search(q, options, embed_query=embed, rerank=False) for q in queries]
        before_calls = [lambda q=q: before.search(q, options, embed_query=embed, rerank=False) for q in queries]
        kept_wall, kept_cpu, before_wall, before_cpu = interleaved(kept_calls, before_calls)
    p50 = statistics.median
    return {
        "mode": mode,
        "kept_p50_ms": round(p50(kept_wall), 3),
        "per_search_p50_ms": round(p50(before_wall), 3),
        "ratio": round(p50(before_wall) / p50(kept_wall), 2),
        "kept_cpu_p50_ms": round(p50(kept_cpu), 3),
        "per_search_cpu_p50_ms": round(p50(before_cpu), 3),
        "cpu_ratio": round(p50(before_cpu) / max(p50(kept_cpu), 1e-6), 2),
    }


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chunks", type=int, default=2000, help="chunks in the index (a multiple of 10)")
    parser.add_argument("--dims", type=int, default=256)
    parser.add_argument("--queries", type=int, default=200, help="timed searches per path and mode")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    vocabulary = made_up_vocabulary(rng)
    with tempfile.TemporaryDirectory() as folder:
        db = Path(folder) / "index.db"
        build_index(db, zipf_texts(rng, vocabulary, args.chunks, 80), unit_rows(rng, args.chunks, args.dims))
        queries = keyword_queries(rng, vocabulary, args.queries)
        vector = unit_rows(rng, 1, args.dims)[0]
        rows = [bench_mode(db, mode, queries, vector) for mode in ("keyword", "vector")]
    print(f"{args.chunks} chunks x {args.dims} dims, {args.queries} searches per path")
    print("| " + " | ".join(rows[0]) + " |")
    print("| " + " | ".join("---" for _ in rows[0]) + " |")
    for row in rows:
        print("| " + " | ".join(str(value) for value in row.values()) + " |")


if __name__ == "__main__":
    main(sys.argv[1:])
