"""Keyword-side levers on existing indexes: BM25 field weights and the word tables searched.

Each variant changes the keyword side only, so the vectors, chunks and query embeddings
stay the same and only the keyword list (and through it hybrid) can move:

- ``weights T,H,P``: FTS5's bm25() column weights for chunk text, heading and file path
  (``keyword_search.BM25_COLUMN_WEIGHTS``, which queries pass to FTS5, swapped for the run);
  ``1,0,0`` leaves headings and file names out of keyword search, the keyword half of the
  chunk-header lever;
- ``as written``: words searched in ``chunks_fts`` only (the keyword list before stemming);
  ``stemmed``: in ``chunks_stemmed`` only (Porter); ``both``: in both, scores added (the
  default, ``keywords.keyword_sources``).

Usage: python scripts/bench_keyword_levers.py [--modes keyword,hybrid] DB QUERIES [DB QUERIES ...]
QUERIES is anything `edge-embed eval` reads (a JSONL file or a BEIR folder). ``--modes
keyword`` needs no model. Prints one Markdown table: Recall@10 / MRR@10 / nDCG@10 per
mode, variant and index.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import edge_embed.store.keyword_search as retrieval
from bench_fusion import embedder_once  # scripts/ is on the path when a script runs
from edge_embed.evaluate import evaluate, load_queries
from edge_embed.store import Store
from edge_embed.store.keywords import KeywordTerms

LIBRARY_SOURCES = retrieval.keyword_sources
Sources = Callable[[KeywordTerms], list[tuple[str, list[str]]]]


def without(table: str) -> Sources:
    """keyword_sources with one word table left out."""
    return lambda terms: [(name, phrases) for name, phrases in LIBRARY_SOURCES(terms) if name != table]


# name -> (BM25 column weights for text, heading, path; which tables the words are searched in)
VARIANTS: dict[str, tuple[tuple[float, ...], Sources]] = {
    "weights 1,2,1 (the old default), both": ((1.0, 2.0, 1.0), LIBRARY_SOURCES),
    "weights 1,1,1, both": ((1.0, 1.0, 1.0), LIBRARY_SOURCES),
    "weights 1,0,0 (no headings, no file names), both": ((1.0, 0.0, 0.0), LIBRARY_SOURCES),
    "weights 1,4,4, as written (before stemming)": ((1.0, 4.0, 4.0), without("chunks_stemmed")),
    "weights 1,4,4, stemmed only": ((1.0, 4.0, 4.0), without("chunks_fts")),
    "weights 1,4,4, both (the default)": ((1.0, 4.0, 4.0), LIBRARY_SOURCES),
}


def run_set(db: Path, queries_path: Path, modes: tuple[str, ...], table: dict[str, list[str]]) -> None:
    queries = load_queries(queries_path)
    with Store.open(db, create=False) as store:
        embed_once = embedder_once(db, store) if "hybrid" in modes else None
        for name, (weights, sources) in VARIANTS.items():
            retrieval._RANK_FUNCTION = f"bm25({', '.join(map(str, weights))})"  # what queries rank by
            retrieval.keyword_sources = sources
            summary = evaluate(store, queries, modes, 10, embed_query=embed_once).summary()
            cells = [f"{summary[m].recall:.3f} / {summary[m].mrr:.3f} / {summary[m].ndcg:.3f}" for m in modes]
            table.setdefault(name, []).extend(cells)
            print(f"{db.name} {name}: {cells}", file=sys.stderr, flush=True)
    retrieval.keyword_sources = LIBRARY_SOURCES


def parse_pairs(description: str) -> tuple[list[tuple[str, str]], tuple[str, ...]]:
    """``DB QUERIES [DB QUERIES ...] [--modes m,n]`` from the command line: the pairs and the modes."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("pairs", nargs="+", metavar="DB QUERIES", help="index and its queries, repeated")
    parser.add_argument("--modes", default="keyword,hybrid")
    args = parser.parse_args()
    return list(zip(args.pairs[::2], args.pairs[1::2])), tuple(args.modes.split(","))


def main() -> None:
    pairs, modes = parse_pairs(__doc__.split("\n\n")[0])
    table: dict[str, list[str]] = {}
    for db, queries in pairs:
        run_set(Path(db), Path(queries), modes, table)
    print_table("variant", pairs, modes, table)


def print_table(first: str, pairs: list[tuple[str, str]], modes: tuple[str, ...], table: dict[str, list[str]]) -> None:
    """The Markdown table of ``table``'s rows (a cell per index and mode), headed by ``first``."""
    heads = [f"{Path(db).stem} {mode}" for db, _ in pairs for mode in modes]
    print("Recall@10 / MRR@10 / nDCG@10")
    print(f"| {first} | " + " | ".join(heads) + " |")
    print("|---" * (len(heads) + 1) + "|")
    for name, cells in table.items():
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
