"""Hybrid fusion variants on existing dev-set indexes: a measurement harness, not a feature.

Each variant replaces ``edge_embed.search.fuse`` for the run (candidate lists, per-file
grouping, deepening and scoring are the library's), so a fusion idea is measured on the
dev sets before anyone changes the library. The query vectors and the two candidate lists
of every query are computed once and shared by all variants (``cache_searches``), so a
variant costs only its own arithmetic. Variants (``variants``):

- ``rrf60``: reciprocal rank fusion, k = 60, per chunk, both lists weight 1 (the old default);
- ``kw x1.5`` / ``vec x1.5``: weighted RRF;
- ``bonus``: RRF + 0.05 for a #1 and + 0.02 for a #2-3 in either list (qmd's top-rank bonus);
- ``per-file``: each list first reduced to its best chunk per file (ranks among files),
  then RRF; ``per-file + bonus``: both;
- ``strong-signal shortcut``: RRF, but a decisive BM25 #1 (>= 0.5 of the query's BM25
  ceiling and >= 0.15 above the #2) is put first (qmd's shortcut, on this scale);
- ``minmax``: each list's scores scaled to 0..1 over its candidates (best = 1, worst = 0),
  summed (a convex combination with equal weights, "relative score fusion");
- ``zscore``: each list's scores as (score - mean) / (3 * standard deviation) over its
  candidates (distribution-based score fusion), summed;
- ``tmm``: each score over its list's best, the floor 0 (theoretical min-max);
- ``borda``: (n - rank) / n per list, summed;
- ``cos + bm25/ceiling``: the library's fusion (``search.fuse``): the cosine plus BM25
  over the query's BM25 ceiling, a missing list's floor; ``no floors``: a missing list adds 0;
- ``... per-file``: the same after the per-file reduction.

Usage: python scripts/bench_fusion.py [--bm25-weights 1,2,1] SET-DB QUERIES [SET-DB QUERIES ...]
  e.g. python scripts/bench_fusion.py .bench/retrieval/docs-c256.db .bench/devsets/docs/queries.jsonl \
           .bench/retrieval/code-c256.db .bench/devsets/code/queries.jsonl
Prints one Markdown table: Recall@10 / MRR@10 per variant and index.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path

import edge_embed.search as search_module
import edge_embed.store.retrieval as retrieval
from edge_embed.api import Index
from edge_embed.cli.options import settings_from_options
from edge_embed.evaluate import evaluate, load_queries
from edge_embed.store import Store

Ranked = Sequence[tuple[int, float]]
Fuse = Callable[..., list]
BONUS = (0.05, 0.02, 0.02)
RRF_K = 60  # reciprocal rank fusion's constant (Cormack et al. 2009), the old default
LIBRARY_FUSE = search_module.fuse  # the runs below swap search_module.fuse


def best_chunk_per_file(store: Store, lists: dict[str, Ranked]) -> dict[str, Ranked]:
    """Each list with only its first chunk of each file; a file keeps one chunk id in all lists."""
    files = store.chunk_files([cid for ranked in lists.values() for cid, _ in ranked])
    representative: dict[object, int] = {}
    reduced: dict[str, Ranked] = {}
    for name, ranked in lists.items():
        seen: set[object] = set()
        kept = []
        for cid, score in ranked:
            file_id = files.get(cid, -cid)
            if file_id not in seen:
                seen.add(file_id)
                kept.append((representative.setdefault(file_id, cid), score))
        reduced[name] = kept
    return reduced


def rrf_scores(ranked: Ranked, weight: float = 1.0) -> dict[int, float]:
    return {cid: weight / (RRF_K + rank) for rank, (cid, _) in enumerate(ranked, 1)}


def minmax_scores(ranked: Ranked, weight: float = 1.0) -> dict[int, float]:
    if not ranked:
        return {}
    values = [s for _, s in ranked]
    low, high = min(values), max(values)
    span = high - low
    return {cid: weight * ((s - low) / span if span else 1.0) for cid, s in ranked}


def zscore_scores(ranked: Ranked, weight: float = 1.0) -> dict[int, float]:
    if len(ranked) < 2:
        return {cid: weight for cid, _ in ranked}
    values = [s for _, s in ranked]
    mean, sd = statistics.fmean(values), statistics.pstdev(values) or 1.0
    return {cid: weight * (s - mean) / (3 * sd) for cid, s in ranked}


def tmm_scores(ranked: Ranked, weight: float = 1.0) -> dict[int, float]:
    """Theoretical min-max (Bruch et al. 2023): score / the list's best, the floor being 0
    (BM25's least; a cosine under 0 counts as 0)."""
    if not ranked:
        return {}
    high = max(ranked[0][1], 1e-9)
    return {cid: weight * max(s, 0.0) / high for cid, s in ranked}


def borda_scores(ranked: Ranked, weight: float = 1.0) -> dict[int, float]:
    n = len(ranked)
    return {cid: weight * (n - rank) / n for rank, (cid, _) in enumerate(ranked)}


def make_fuse(store: Store, scorer=rrf_scores, *, weights=(1.0, 1.0), bonus: Sequence[float] = (), per_file: bool = False) -> Fuse:
    """A replacement for search.fuse: per-list ``scorer`` summed, optional bonus and file reduction."""

    def fuse(vector: Ranked, keyword: Ranked, fusion: search_module.Fusion | None = None):
        lists = {"vector": vector, "keyword": keyword}
        if per_file:
            lists = best_chunk_per_file(store, lists)
        ranks: dict[int, dict[str, search_module.ListRank]] = defaultdict(dict)
        total: dict[int, float] = defaultdict(float)
        for (name, ranked), weight in zip(lists.items(), weights):
            for rank, (cid, score) in enumerate(ranked, 1):
                ranks[cid][name] = search_module.ListRank(rank, score)
            for cid, value in scorer(ranked, weight).items():
                total[cid] += value
        fused = []
        for cid, by_list in ranks.items():
            best = min(r.rank for r in by_list.values())
            score = total[cid] + (bonus[best - 1] if best <= len(bonus) else 0.0)
            fused.append(search_module._Candidate(cid, score, by_list.get("vector"), by_list.get("keyword")))
        return sorted(fused, key=lambda c: (-c.score, c.chunk_id))

    return fuse


def fuse_per_file(store: Store, fuse: Fuse) -> Fuse:
    """``fuse`` after each list is reduced to its best chunk per file."""

    def fused(vector: Ranked, keyword: Ranked, fusion: search_module.Fusion | None = None):
        lists = best_chunk_per_file(store, {"vector": vector, "keyword": keyword})
        return fuse(lists["vector"], lists["keyword"], fusion)

    return fused


def without_floors(vector: Ranked, keyword: Ranked, fusion: search_module.Fusion):
    """The library's score fusion with a chunk missing from a list given 0 instead of the floor."""
    return LIBRARY_FUSE(vector, keyword, search_module.Fusion(fusion.keyword_ceiling))


def strong_signal(fuse: Fuse, share: float = 0.5, gap: float = 0.15) -> Fuse:
    """``fuse``, but a decisive BM25 first place (at least ``share`` of the query's ceiling and
    ``gap`` more than the second's) goes first: qmd's strong-signal shortcut, on our scale."""

    def fused(vector: Ranked, keyword: Ranked, fusion: search_module.Fusion | None = None):
        ranked = fuse(vector, keyword, fusion)
        if not keyword or fusion is None or fusion.keyword_ceiling <= 0:
            return ranked
        first = keyword[0][1] / fusion.keyword_ceiling
        second = keyword[1][1] / fusion.keyword_ceiling if len(keyword) > 1 else 0.0
        if first < share or first - second < gap:
            return ranked
        top = next(c for c in ranked if c.chunk_id == keyword[0][0])
        return [top] + [c for c in ranked if c is not top]

    return fused


def variants(store: Store) -> dict[str, Fuse]:
    return {
        "cos + bm25/ceiling (new default)": LIBRARY_FUSE,
        "cos + bm25/ceiling, no floors": without_floors,
        "cos + bm25/ceiling per-file": fuse_per_file(store, LIBRARY_FUSE),
        "rrf60 (old default)": make_fuse(store),
        "kw x1.5": make_fuse(store, weights=(1.0, 1.5)),
        "vec x1.5": make_fuse(store, weights=(1.5, 1.0)),
        "bonus .05/.02/.02": make_fuse(store, bonus=BONUS),
        "per-file RRF": make_fuse(store, per_file=True),
        "per-file + bonus": make_fuse(store, bonus=BONUS, per_file=True),
        "rrf60 + strong-signal shortcut": strong_signal(make_fuse(store)),
        "minmax": make_fuse(store, minmax_scores),
        "minmax per-file": make_fuse(store, minmax_scores, per_file=True),
        "zscore": make_fuse(store, zscore_scores),
        "zscore per-file": make_fuse(store, zscore_scores, per_file=True),
        "tmm": make_fuse(store, tmm_scores),
        "tmm per-file": make_fuse(store, tmm_scores, per_file=True),
        "borda": make_fuse(store, borda_scores),
        "minmax + bonus": make_fuse(store, minmax_scores, bonus=(0.1, 0.04, 0.04)),
    }


class _CachedRanking:
    """A VectorRanking whose ``top`` is read once per depth."""

    def __init__(self, ranking, key: tuple, memo: dict) -> None:
        self.ranking, self.key, self.memo = ranking, key, memo

    def top(self, depth: int) -> list[tuple[int, float]]:
        if (self.key, depth) not in self.memo:
            self.memo[(self.key, depth)] = self.ranking.top(depth)
        return self.memo[(self.key, depth)]


def cache_searches(store: Store) -> None:
    """Memoise this store's vector and keyword searches: every variant sees the same lists."""
    keyword_search, vector_ranking = store.keyword_search, store.vector_ranking
    memo: dict = {}

    def cached_keyword(text: str, k: int, **filters):
        key = ("keyword", text, k, repr(sorted(filters.items())))
        if key not in memo:
            memo[key] = keyword_search(text, k, **filters)
        return memo[key]

    def cached_ranking(query_vec, **filters):
        key = ("vector", query_vec.tobytes(), repr(sorted(filters.items())))
        return _CachedRanking(vector_ranking(query_vec, **filters), key, memo)

    store.keyword_search, store.vector_ranking = cached_keyword, cached_ranking


def embedder_once(db: Path, store: Store) -> Callable:
    """The index's query embedder (one llama.cpp thread), each query text embedded once."""
    runtime = {"gpu_layers": None, "ctx": None, "batch": None, "threads": 1, "force_cpu": False}
    embed = Index.open(db, settings_from_options(**runtime)).query_embedder(store, None)
    vectors: dict[str, object] = {}

    def embed_once(text: str):
        if text not in vectors:
            vectors[text] = embed(text)
        return vectors[text]

    return embed_once


def run_set(db: Path, queries_path: Path, table: dict[str, list[str]]) -> None:
    queries = load_queries(queries_path)
    store = Store.open(db, create=False)
    cache_searches(store)
    embed_once = embedder_once(db, store)

    for mode, s in evaluate(store, queries, ("vector", "keyword"), 10, embed_query=embed_once).summary().items():
        table.setdefault(f"{mode} alone", []).append(f"{s.recall:.3f} / {s.mrr:.3f}")
    for name, fuse in variants(store).items():
        search_module.fuse = fuse
        s = evaluate(store, queries, ("hybrid",), 10, embed_query=embed_once).summary()["hybrid"]
        table.setdefault(name, []).append(f"{s.recall:.3f} / {s.mrr:.3f}")
        print(f"{db.name} {name}: {s.recall:.3f} / {s.mrr:.3f}", file=sys.stderr, flush=True)
    search_module.fuse = LIBRARY_FUSE


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pairs", nargs="+", metavar="DB QUERIES", help="index and its queries file, repeated")
    parser.add_argument("--bm25-weights", metavar="T,H,P", help="BM25 column weights for the run "
                        f"(text, heading, path; default the library's {retrieval.BM25_COLUMN_WEIGHTS})")
    args = parser.parse_args()
    if args.bm25_weights:
        retrieval._RANK_FUNCTION = f"bm25({args.bm25_weights})"
    pairs = list(zip(args.pairs[::2], args.pairs[1::2]))
    table: dict[str, list[str]] = {}
    for db, queries in pairs:
        run_set(Path(db), Path(queries), table)
    print("| variant | " + " | ".join(Path(db).stem for db, _ in pairs) + " |")
    print("|---" * (len(pairs) + 1) + "|")
    for name, cells in table.items():
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
