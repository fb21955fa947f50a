"""What a chunk's keyword rows hold: the chunk alone, with the next chunk's words, or with
both neighbours' (the default, ``keywords.keyword_texts``) -- on copies of existing indexes.

BM25 over chunks the size of an embedding model's input splits what one passage says
across chunk boundaries. Each variant refills every keyword table of a copy of the index
(``VACUUM INTO`` a temporary folder) from its stored chunks (``schema.refill_keyword_rows``,
what migration 6 runs), so chunks, vectors and query
embeddings are the same in every variant and only the keyword list (and through it
hybrid) can move. Neighbours count only within the chunk's section (same heading).

Below the table, a paired sign test of each variant against the chunk alone, per mode:
queries found only by one of the two (Recall@10), and queries whose first answer one
ranks higher (reciprocal rank), with the two-sided exact binomial p.

Usage: python scripts/bench_keyword_windows.py [--modes keyword,hybrid] DB QUERIES [DB QUERIES ...]
QUERIES is anything `edge-embed eval` reads (a JSONL file or a BEIR folder). ``--modes
keyword`` needs no model. Prints one Markdown table: Recall@10 / MRR@10 / nDCG@10.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import apsw
import sqlite_vec

from bench_fusion import embedder_once, sign_test  # scripts/ is on the path when a script runs
from bench_keyword_levers import parse_pairs, print_table
from edge_embed.evaluate import EvalReport, evaluate, load_queries
from edge_embed.store import Store
from edge_embed.store.keywords import keyword_texts
from edge_embed.store.schema import refill_keyword_rows

Texts = Callable[[Sequence[tuple[str | None, str]]], list[str]]


def alone(chunks: Sequence[tuple[str | None, str]]) -> list[str]:
    return [text for _, text in chunks]


def with_the_next(chunks: Sequence[tuple[str | None, str]]) -> list[str]:
    """The chunk's text, then the next chunk's when it is in the same section."""
    return [
        f"{text}\n{chunks[i + 1][1]}" if i + 1 < len(chunks) and chunks[i + 1][0] == heading else text
        for i, (heading, text) in enumerate(chunks)
    ]


VARIANTS: dict[str, Texts] = {
    "the chunk alone (before)": alone,
    "the chunk and the next": with_the_next,
    "both neighbours (the default)": keyword_texts,
}


def copy_with_keyword_texts(db: Path, folder: Path, name: str, texts: Texts) -> Path:
    """``db`` copied into ``folder``, its keyword tables refilled with ``texts`` of each file's chunks."""
    copy = folder / f"{db.stem}-{len(list(folder.iterdir()))}.db"
    conn = apsw.Connection(str(db), flags=apsw.SQLITE_OPEN_READONLY)
    conn.execute("VACUUM INTO ?", (str(copy),))
    conn.close()
    conn = apsw.Connection(str(copy))
    conn.enable_load_extension(True)
    sqlite_vec.load(conn)
    with conn:
        refill_keyword_rows(conn, texts)
    conn.close()
    print(f"{db.name}: {name}: keyword tables refilled", file=sys.stderr, flush=True)
    return copy


def paired(report: EvalReport, baseline: EvalReport, mode: str) -> str:
    """'found +a -b p; ranked +c -d p' of ``report`` against ``baseline`` in ``mode``."""
    ours = {r.query.line: r.scores for r in report.results if r.mode == mode}
    theirs = {r.query.line: r.scores for r in baseline.results if r.mode == mode}
    cells = []
    for name, metric in (("found", "recall"), ("ranked", "mrr")):
        signs = [(getattr(ours[q], metric) > getattr(theirs[q], metric)) - (getattr(ours[q], metric) < getattr(theirs[q], metric)) for q in ours]
        wins, losses = signs.count(1), signs.count(-1)
        cells.append(f"{name} +{wins} -{losses} p={sign_test(wins, losses):.2g}")
    return "; ".join(cells)


def run_set(db: Path, queries_path: Path, modes: tuple[str, ...], table: dict[str, list[str]], tests: list[str]) -> None:
    queries = load_queries(queries_path)
    reports: dict[str, EvalReport] = {}
    with tempfile.TemporaryDirectory(dir=db.parent) as folder:
        for name, texts in VARIANTS.items():
            with Store.open(copy_with_keyword_texts(db, Path(folder), name, texts), create=False) as store:
                embed_once = embedder_once(db, store) if "hybrid" in modes else None
                reports[name] = evaluate(store, queries, modes, 10, embed_query=embed_once)
            summary = reports[name].summary()
            table.setdefault(name, []).extend(
                f"{summary[m].recall:.3f} / {summary[m].mrr:.3f} / {summary[m].ndcg:.3f}" for m in modes
            )
    baseline = reports[next(iter(VARIANTS))]
    for name in list(VARIANTS)[1:]:
        tests.extend(f"- {db.stem} {mode}, {name} vs alone: {paired(reports[name], baseline, mode)}" for mode in modes)


def main() -> None:
    pairs, modes = parse_pairs(__doc__.split("\n\n")[0])
    table: dict[str, list[str]] = {}
    tests: list[str] = []
    for db, queries in pairs:
        run_set(Path(db), Path(queries), modes, table, tests)
    print_table("keyword rows hold", pairs, modes, table)
    print("\nPaired sign tests:")
    print("\n".join(tests))


if __name__ == "__main__":
    main()
