"""Hybrid fusion variants on an existing dev-set index: a measurement harness, not a feature.

Each variant replaces ``edge_embed.search.fuse`` for the run (the rest of search, the
per-file grouping and the scoring are the library's), so a fusion idea is measured on
the dev sets before anyone changes the library. The query vectors are computed once and
shared by all variants. Variants:

- ``rrf60``: today's fusion, RRF k=60 per chunk, both lists weight 1;
- ``kw x1.5`` / ``vec x1.5``: weighted RRF;
- ``bonus``: + 0.05 for a #1 and + 0.02 for a #2-3 in either list (qmd's top-rank bonus);
- ``per-file``: each list first reduced to its best chunk per file (ranks among files),
  then RRF; ``per-file + bonus``: both.

Usage: python scripts/bench_fusion.py .bench/retrieval/docs-c512.db .bench/devsets/docs/queries.jsonl
"""

from __future__ import annotations

import sys
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import edge_embed.search as search_module
from edge_embed.api import Index
from edge_embed.cli.options import settings_from_options
from edge_embed.evaluate import evaluate, load_queries
from edge_embed.store import Store

Ranked = Sequence[tuple[int, float]]
BONUS = (0.05, 0.02, 0.02)


def best_chunk_per_file(store: Store, lists: dict[str, Ranked]) -> dict[str, Ranked]:
    """Each list with only its first chunk of each file; a file keeps one chunk id in all lists."""
    records = store.chunks_by_id([cid for ranked in lists.values() for cid, _ in ranked])
    representative: dict[str, int] = {}
    reduced: dict[str, Ranked] = {}
    for name, ranked in lists.items():
        seen: set[str] = set()
        kept = []
        for cid, score in ranked:
            path = records[cid].path if cid in records else str(cid)
            if path not in seen:
                seen.add(path)
                kept.append((representative.setdefault(path, cid), score))
        reduced[name] = kept
    return reduced


def make_fuse(store: Store, *, weights=(1.0, 1.0), bonus: Sequence[float] = (), per_file: bool = False):
    """A replacement for search.fuse with the given weights, top-rank bonus and file reduction."""

    def fuse(vector: Ranked, keyword: Ranked):
        lists = {"vector": vector, "keyword": keyword}
        if per_file:
            lists = best_chunk_per_file(store, lists)
        ranks: dict[int, dict[str, search_module.ListRank]] = defaultdict(dict)
        for name, ranked in lists.items():
            for rank, (cid, score) in enumerate(ranked, 1):
                ranks[cid][name] = search_module.ListRank(rank, score)
        weight = dict(zip(lists, weights))
        fused = []
        for cid, by_list in ranks.items():
            score = sum(weight[name] * r.rrf for name, r in by_list.items())
            best = min(r.rank for r in by_list.values())
            score += bonus[best - 1] if best <= len(bonus) else 0.0
            fused.append(search_module._Candidate(cid, score, by_list.get("vector"), by_list.get("keyword")))
        return sorted(fused, key=lambda c: (-c.score, c.chunk_id))

    return fuse


def main() -> None:
    db, queries = Path(sys.argv[1]), load_queries(Path(sys.argv[2]))
    store = Store.open(db, create=False)
    runtime = {"gpu_layers": None, "ctx": None, "batch": None, "threads": 1, "force_cpu": False}
    embed = Index.open(db, settings_from_options(**runtime)).query_embedder(store, None)
    vectors: dict[str, object] = {}

    def cached(text: str):  # one embedding per query for all variants
        if text not in vectors:
            vectors[text] = embed(text)
        return vectors[text]

    variants = {
        "rrf60 (today)": make_fuse(store),
        "kw x1.5": make_fuse(store, weights=(1.0, 1.5)),
        "vec x1.5": make_fuse(store, weights=(1.5, 1.0)),
        "bonus .05/.02/.02": make_fuse(store, bonus=BONUS),
        "per-file RRF": make_fuse(store, per_file=True),
        "per-file + bonus": make_fuse(store, bonus=BONUS, per_file=True),
    }
    print(f"| {db.name} | Recall@10 | MRR@10 | nDCG@10 |\n|---|---|---|---|")
    for mode, s in evaluate(store, queries, ("vector", "keyword"), 10, embed_query=cached).summary().items():
        print(f"| {mode} | {s.recall:.3f} | {s.mrr:.3f} | {s.ndcg:.3f} |")
    for name, fuse in variants.items():
        search_module.fuse = fuse
        s = evaluate(store, queries, ("hybrid",), 10, embed_query=cached).summary()["hybrid"]
        print(f"| hybrid: {name} | {s.recall:.3f} | {s.mrr:.3f} | {s.ndcg:.3f} |", flush=True)


if __name__ == "__main__":
    main()
