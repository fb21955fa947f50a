#!/usr/bin/env python
"""Two-stage vector search against the exact scan on REAL embeddings: does it find the same?

scripts/bench_search.py measures recall on synthetic embedding-like vectors at scale; this
checks the same thing on an index built by ``edge-embed index`` with a real model (e.g.
MiniLM over a dev set of docs/devsets.md), with the dev set's own questions as queries,
embedded by the index's model. For each query: the exact top 10 (sqlite-vec's scan)
against the two-stage top 10 (forced, whatever the index's size), as recall@10 and
recall@1, and the number of float vectors the second stage read back. A dev-set index is
small (hundreds of chunks), where the default floor of 160 re-scored candidates is a
quarter of the index; ``--rescore N`` lowers the floor to see how well the coarse
estimate orders real vectors when only a few per cent of them are read back.

    python scripts/bench_stages_real.py --db .bench/retrieval/docs-c128.db \\
        --queries .bench/devsets/docs/queries.jsonl --json

The index is opened read-only in effect (nothing is written). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import numpy as np

from edge_embed.api import Index
from edge_embed.store import vectors as retrieval

K = 10


def read_queries(path: Path, limit: int) -> list[str]:
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [line["query"] for line in lines][:limit]


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", type=Path, required=True, help="an index built with a real model")
    parser.add_argument("--queries", type=Path, required=True, help="JSONL with a 'query' per line (eval's format)")
    parser.add_argument("--limit", type=int, default=1000, help="at most this many queries")
    parser.add_argument("--rescore", type=int, default=retrieval.RESCORE_MIN, help="candidates re-scored (floor)")
    parser.add_argument("--json", action="store_true", help="(the output is always one JSON object)")
    args = parser.parse_args(argv)
    retrieval.RESCORE_MIN = args.rescore
    retrieval.RESCORE_PER_RESULT = 0
    texts = read_queries(args.queries, args.limit)
    with Index.open(args.db) as index, index.store() as store:
        settings = store.meta.settings()
        embedder = index.query_model(settings)
        vectors = embedder.embed(texts, input_type="query", instruct=settings.instruction, dims=settings.dims)
        exact_top = [[cid for cid, _ in store.vectors.vector_search(np.asarray(v), K)] for v in vectors]
        store.vectors.exact_scan_max_floats = store.vectors.two_stage_min_dims = 0
        rankings = [store.vectors.vector_ranking(np.asarray(v)) for v in vectors]
        staged_top = [[cid for cid, _ in ranking.top(K)] for ranking in rankings]
        chunks = store.maintenance.stats()["chunks"]
    row = {
        "db": str(args.db),
        "chunks": chunks,
        "dims": settings.dims,
        "model": settings.model_label,
        "queries": len(texts),
        "rescore_floor": args.rescore,
        "recall_at_10": round(float(np.mean([len(set(e) & set(s)) / K for e, s in zip(exact_top, staged_top)])), 4),
        "recall_at_1": round(float(np.mean([e[:1] == s[:1] for e, s in zip(exact_top, staged_top)])), 4),
        "rescored_p50": statistics.median(r.rescored for r in rankings),
    }
    print(json.dumps(row))


if __name__ == "__main__":
    main(sys.argv[1:])
