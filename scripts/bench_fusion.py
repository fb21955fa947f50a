"""Hybrid fusion variants on existing indexes: a measurement harness, not a feature.

Each variant replaces ``edge_embed.search.fuse`` for the run (candidate lists, per-file
grouping, the agreement rule of ``search.agreeing_page``, deepening and scoring are the
library's), so a fusion idea is measured before anyone changes the library. The query
vectors and the two candidate lists of every query are computed once and shared by all
variants (``cache_searches``), so a variant costs only its own arithmetic.

The candidates of issue 20 (``CANDIDATES``, the default), each with the agreement rule:

- ``sum``: the library's fusion: the cosine plus BM25 over the query's BM25 ceiling, a
  missing list's floor (``results.Fusion``); ``sum, old page`` is the same without the
  agreement rule (``agreeing_page`` replaced by the plain fused page): the old default;
- ``sum + rrf``: ``sum`` plus a reciprocal-rank term on a 0..1 scale,
  ``((60 + 1) / (60 + vector rank) + (60 + 1) / (60 + keyword rank)) / 2`` (1 for a chunk
  first in both lists, a missing list adds 0): rewards agreement between the lists;
- ``max-normalised``: each list's score over its best candidate's (a missing list's floor
  likewise), the two halves averaged: a convex combination with equal weights;
- ``rrf + floor``: reciprocal rank fusion (k = 60), a chunk missing from a list that was
  cut at the search depth gets the rank just past its end (the rank floor), as ``sum``
  gives such a chunk the list's last score.

``--variants all`` adds the earlier variants of issue 9 (weighted RRF, top-rank bonus,
per-file reduction, strong-signal shortcut, min-max, z-score, theoretical min-max, Borda;
see ``variants``). ``--exact-words`` searches the keyword list in ``chunks_fts`` only
(words as written, the keyword list before stemming).

Below the table, a paired sign test of each variant's hybrid against each list alone:
queries found only by hybrid vs only by that list (Recall@10), and queries whose answer
hybrid ranks higher vs lower (reciprocal rank), with the two-sided exact binomial p.

Usage: python scripts/bench_fusion.py [--variants "NAME;NAME"|all] [--exact-words] DB QUERIES [DB QUERIES ...]
  e.g. python scripts/bench_fusion.py .bench/retrieval/docs-c256.db .bench/devsets/docs/queries.jsonl \
           .bench/retrieval/code-c256.db .bench/devsets/code/queries.jsonl .bench/scifact/scifact.db .bench/scifact
QUERIES is anything `edge-embed eval` reads (a JSONL file or a BEIR folder).
Prints one Markdown table: Recall@10 / MRR@10 / nDCG@10 per variant and index.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path

import edge_embed.search as search_module
import edge_embed.store.keyword_search as retrieval
from edge_embed.api import Index
from edge_embed.cli.options import settings_from_options
from edge_embed.evaluate import EvalReport, evaluate, load_queries
from edge_embed.results import Fusion, ListRank
from edge_embed.search import limit_per_file
from edge_embed.store import Store

Ranked = Sequence[tuple[int, float]]
Fuse = Callable[..., list]
BONUS = (0.05, 0.02, 0.02)
RRF_K = 60  # reciprocal rank fusion's constant (Cormack et al. 2009), the old default
LIBRARY_FUSE = search_module.fuse  # the runs below swap search_module.fuse
LIBRARY_PAGE = search_module.agreeing_page
LIBRARY_SOURCES = retrieval.keyword_sources
CANDIDATES = ("sum, old page", "sum", "sum + rrf", "max-normalised", "rrf + floor")


def best_chunk_per_file(store: Store, lists: dict[str, Ranked]) -> dict[str, Ranked]:
    """Each list with only its first chunk of each file; a file keeps one chunk id in all lists."""
    files = store.files.chunk_files([cid for ranked in lists.values() for cid, _ in ranked])
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

    def fuse(vector: Ranked, keyword: Ranked, fusion: Fusion | None = None):
        lists = {"vector": vector, "keyword": keyword}
        if per_file:
            lists = best_chunk_per_file(store, lists)
        ranks: dict[int, dict[str, ListRank]] = defaultdict(dict)
        total: dict[int, float] = defaultdict(float)
        for (name, ranked), weight in zip(lists.items(), weights):
            for rank, (cid, score) in enumerate(ranked, 1):
                ranks[cid][name] = ListRank(rank, score)
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

    def fused(vector: Ranked, keyword: Ranked, fusion: Fusion | None = None):
        lists = best_chunk_per_file(store, {"vector": vector, "keyword": keyword})
        return fuse(lists["vector"], lists["keyword"], fusion)

    return fused


def without_floors(vector: Ranked, keyword: Ranked, fusion: Fusion):
    """The library's score fusion with a chunk missing from a list given 0 instead of the floor."""
    return LIBRARY_FUSE(vector, keyword, Fusion(fusion.keyword_ceiling))


def strong_signal(fuse: Fuse, share: float = 0.5, gap: float = 0.15) -> Fuse:
    """``fuse``, but a decisive BM25 first place (at least ``share`` of the query's ceiling and
    ``gap`` more than the second's) goes first: qmd's strong-signal shortcut, on our scale."""

    def fused(vector: Ranked, keyword: Ranked, fusion: Fusion | None = None):
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


def candidate_fuse(score: Callable[[ListRank | None, ListRank | None], float]) -> Fuse:
    """A fuse() from a per-chunk score of its two list positions (None: not in that list)."""

    def fuse(vector: Ranked, keyword: Ranked, fusion: Fusion | None = None):
        ranks: dict[int, dict[str, ListRank]] = defaultdict(dict)
        for name, ranked in (("vector", vector), ("keyword", keyword)):
            for rank, (cid, value) in enumerate(ranked, 1):
                ranks[cid][name] = ListRank(rank, value)
        fused = [
            search_module._Candidate(cid, score(by.get("vector"), by.get("keyword")), by.get("vector"), by.get("keyword"))
            for cid, by in ranks.items()
        ]
        return sorted(fused, key=lambda c: (-c.score, c.chunk_id))

    return fuse


def sum_plus_rrf(vector: Ranked, keyword: Ranked, fusion: Fusion):
    """The library's sum plus a 0..1 reciprocal-rank term (see the module docstring)."""

    def rrf(position: ListRank | None) -> float:
        return 0.0 if position is None else (RRF_K + 1) / (RRF_K + position.rank)

    return candidate_fuse(lambda v, k: fusion.score(v, k) + (rrf(v) + rrf(k)) / 2)(vector, keyword)


def max_normalised(vector: Ranked, keyword: Ranked, fusion: Fusion):
    """Each list's score (or floor) over the list's best, averaged with equal weights."""
    best_vector = max(vector[0][1], 1e-9) if vector else 1.0
    best_keyword = max(keyword[0][1], 1e-9) if keyword else 1.0

    def score(v: ListRank | None, k: ListRank | None) -> float:
        cosine = fusion.vector_floor if v is None else v.score
        bm25 = fusion.keyword_floor if k is None else k.score
        return (max(cosine, 0.0) / best_vector + bm25 / best_keyword) / 2

    return candidate_fuse(score)(vector, keyword)


def rrf_with_floor(vector: Ranked, keyword: Ranked, fusion: Fusion):
    """RRF; a chunk missing from a list cut at the depth gets the rank past its end."""
    floor_vector = len(vector) + 1 if fusion.vector_floor else None
    floor_keyword = len(keyword) + 1 if fusion.keyword_floor else None

    def term(position: ListRank | None, floor: int | None) -> float:
        rank = position.rank if position is not None else floor
        return 0.0 if rank is None else 1.0 / (RRF_K + rank)

    return candidate_fuse(lambda v, k: term(v, floor_vector) + term(k, floor_keyword))(vector, keyword)


def plain_page(candidates, vector, keyword, per_file, size, file_of):
    """The fused page without the agreement rule (the old default)."""
    return limit_per_file(candidates, per_file, size, lambda c: file_of(c.chunk_id))


def candidates(store: Store) -> dict[str, tuple[Fuse, Callable]]:
    """Issue 20's fusion candidates: name -> (fuse, page builder)."""
    return {
        "sum, old page": (LIBRARY_FUSE, plain_page),
        "sum": (LIBRARY_FUSE, LIBRARY_PAGE),
        "sum + rrf": (sum_plus_rrf, LIBRARY_PAGE),
        "max-normalised": (max_normalised, LIBRARY_PAGE),
        "rrf + floor": (rrf_with_floor, LIBRARY_PAGE),
    }


def variants(store: Store) -> dict[str, Fuse]:
    """The variants of issue 9 (docs/benchmarks.md, "Fusion"), with the agreement rule."""
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
    keyword_search, vector_ranking = store.keywords.keyword_search, store.vectors.vector_ranking
    memo: dict = {}

    def cached_keyword(text: str, k: int, **filters):
        key = ("keyword", text, k, repr(sorted(filters.items())))
        if key not in memo:
            memo[key] = keyword_search(text, k, **filters)
        return memo[key]

    def cached_ranking(query_vec, **filters):
        key = ("vector", query_vec.tobytes(), repr(sorted(filters.items())))
        return _CachedRanking(vector_ranking(query_vec, **filters), key, memo)

    store.keywords.keyword_search, store.vectors.vector_ranking = cached_keyword, cached_ranking


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


def sign_test(wins: int, losses: int) -> float:
    """Two-sided exact binomial p of ``wins`` against ``losses`` at even odds (ties dropped)."""
    n = wins + losses
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(wins, losses) + 1)) / 2**n
    return min(1.0, 2 * tail)


def paired(report: EvalReport, mode: str, other: str) -> str:
    """'found +a -b p; ranked +c -d p' of ``mode`` against ``other``, query by query."""
    by_query: dict[int, dict[str, object]] = defaultdict(dict)
    for result in report.results:
        by_query[result.query.line][result.mode] = result.scores
    found = [(q[mode].recall > q[other].recall) - (q[mode].recall < q[other].recall) for q in by_query.values()]
    ranked = [(q[mode].mrr > q[other].mrr) - (q[mode].mrr < q[other].mrr) for q in by_query.values()]
    cells = []
    for name, signs in (("found", found), ("ranked", ranked)):
        wins, losses = signs.count(1), signs.count(-1)
        cells.append(f"{name} +{wins} -{losses} p={sign_test(wins, losses):.2g}")
    return "; ".join(cells)


def run_set(db: Path, queries_path: Path, names: Sequence[str], table: dict[str, list[str]], detail: dict) -> None:
    queries = load_queries(queries_path)
    store = Store.open(db, create=False)
    cache_searches(store)
    embed_once = embedder_once(db, store)
    singles = evaluate(store, queries, ("vector", "keyword"), 10, embed_query=embed_once)
    summary = singles.summary()
    for mode, s in summary.items():
        table.setdefault(f"{mode} alone", []).append(f"{s.recall:.3f} / {s.mrr:.3f} / {s.ndcg:.3f}")
    everything = {**candidates(store), **{name: (fuse, LIBRARY_PAGE) for name, fuse in variants(store).items()}}
    for name in names:
        search_module.fuse, search_module.agreeing_page = everything[name]
        report = evaluate(store, queries, ("hybrid",), 10, embed_query=embed_once)
        s = report.summary()["hybrid"]
        report.results.extend(singles.results)
        report.modes += singles.modes
        sign = "; ".join(f"vs {other}: {paired(report, 'hybrid', other)}" for other in ("vector", "keyword"))
        table.setdefault(name, []).append(f"{s.recall:.3f} / {s.mrr:.3f} / {s.ndcg:.3f}")
        detail.setdefault(name, []).append(f"{db.stem}: {sign}")
        print(f"{db.name} {name}: {s.recall:.3f} / {s.mrr:.3f} / {s.ndcg:.3f}; {sign}", file=sys.stderr, flush=True)
    search_module.fuse, search_module.agreeing_page = LIBRARY_FUSE, LIBRARY_PAGE


def exact_words_only(terms):
    """keyword_sources without the stemmed table: the keyword list before stemming."""
    return [(table, phrases) for table, phrases in LIBRARY_SOURCES(terms) if table != "chunks_stemmed"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pairs", nargs="+", metavar="DB QUERIES", help="index and its queries, repeated")
    parser.add_argument("--variants", default=";".join(CANDIDATES), help="names separated by semicolons, or 'all'")
    parser.add_argument("--exact-words", action="store_true", help="keyword search without the stemmed table")
    parser.add_argument("--bm25-weights", metavar="T,H,P", help="BM25 column weights for the run "
                        f"(text, heading, path; default the library's {retrieval.BM25_COLUMN_WEIGHTS})")
    args = parser.parse_args()
    if args.bm25_weights:
        retrieval._RANK_FUNCTION = f"bm25({args.bm25_weights})"
    if args.exact_words:
        retrieval.keyword_sources = exact_words_only
    names = list(CANDIDATES) + list(variants(None)) if args.variants == "all" else args.variants.split(";")
    pairs = list(zip(args.pairs[::2], args.pairs[1::2]))
    table: dict[str, list[str]] = {}
    detail: dict[str, list[str]] = {}
    for db, queries in pairs:
        run_set(Path(db), Path(queries), names, table, detail)
    print("Recall@10 / MRR@10 / nDCG@10")
    print("| variant | " + " | ".join(Path(db).stem for db, _ in pairs) + " |")
    print("|---" * (len(pairs) + 1) + "|")
    for name, cells in table.items():
        print(f"| {name} | " + " | ".join(cells) + " |")
    print("\nPaired sign tests, hybrid against each list alone:")
    for name, lines in detail.items():
        print(f"- {name}: " + "; ".join(lines))


if __name__ == "__main__":
    main()
