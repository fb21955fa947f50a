"""Keyword-side levers on existing dev-set indexes: BM25 field weights and Porter stemming.

Each variant changes the keyword side only (stemming on a scratch copy of the index in
.bench/levers/, made by VACUUM INTO), so the vectors, chunks and query embeddings stay
the same and only the keyword list (and through it hybrid) can move:

- ``weights T,H,P``: FTS5's bm25() column weights for chunk text, heading and file path
  (``retrieval.BM25_COLUMN_WEIGHTS``, which queries pass to FTS5, swapped for the run);
  ``1,0,0`` leaves headings and file names out of keyword search, the keyword half of the
  chunk-header lever;
- ``porter``: ``chunks_fts`` rebuilt with ``tokenize='porter unicode61 remove_diacritics 2'``
  from the stored chunk texts, headings and paths (what a stemming migration would do).

Usage: python scripts/bench_keyword_levers.py SET-DB QUERIES [SET-DB QUERIES ...]
Prints one Markdown table: Recall@10 / MRR@10 of keyword and hybrid per variant and index.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from pathlib import Path

import apsw

import edge_embed.store.retrieval as retrieval
from bench_fusion import embedder_once  # scripts/ is on the path when a script runs
from edge_embed.evaluate import evaluate, load_queries
from edge_embed.store import Store
from edge_embed.store.schema import connect

SCRATCH = Path(".bench/levers")
Change = Callable[[apsw.Connection], None]




def porter(conn: apsw.Connection) -> None:
    """chunks_fts again, stemmed, filled from the chunks and their files' relpaths."""
    conn.execute(
        """
        DROP TABLE chunks_fts;
        CREATE VIRTUAL TABLE chunks_fts USING fts5(
            text, heading, path, content='', contentless_delete=1,
            tokenize='porter unicode61 remove_diacritics 2'
        );
        INSERT INTO chunks_fts(rowid, text, heading, path)
            SELECT c.id, c.text, coalesce(c.heading, ''), f.relpath FROM chunks c JOIN files f ON f.id = c.file_id;
        """
    )


# name -> (BM25 column weights for text, heading, path; change to a scratch copy or None)
VARIANTS: dict[str, tuple[tuple[float, ...], Change | None]] = {
    "weights 1,2,1 (the old default)": ((1.0, 2.0, 1.0), None),
    "weights 1,1,1": ((1.0, 1.0, 1.0), None),
    "weights 1,2,2": ((1.0, 2.0, 2.0), None),
    "weights 1,4,4 (the new default)": ((1.0, 4.0, 4.0), None),
    "weights 1,0,0 (no headings, no file names)": ((1.0, 0.0, 0.0), None),
    "weights 1,4,4 + porter stemming": ((1.0, 4.0, 4.0), porter),
}


def scratch_copy(db: Path, name: str, change: Change) -> Path:
    """A copy of ``db`` with ``change`` applied; an old copy is replaced."""
    SCRATCH.mkdir(parents=True, exist_ok=True)
    target = SCRATCH / f"{db.stem}-{re.sub(r'[^a-z0-9]+', '-', name.lower()).strip('-')}.db"
    target.unlink(missing_ok=True)
    conn = connect(db, create=False)
    conn.execute("VACUUM INTO ?", (str(target),))
    conn.close()
    conn = connect(target, create=False)
    with conn:
        change(conn)
    conn.close()
    return target


def run_set(db: Path, queries_path: Path, table: dict[str, list[str]]) -> None:
    queries = load_queries(queries_path)
    embed_once = embedder_once(db, Store.open(db, create=False))

    for name, (weights, change) in VARIANTS.items():
        retrieval._RANK_FUNCTION = f"bm25({', '.join(map(str, weights))})"  # what queries rank by
        path = db if change is None else scratch_copy(db, name, change)
        with Store.open(path, create=False) as store:
            summary = evaluate(store, queries, ("keyword", "hybrid"), 10, embed_query=embed_once).summary()
        cells = [f"{summary[m].recall:.3f} / {summary[m].mrr:.3f}" for m in ("keyword", "hybrid")]
        table.setdefault(name, []).extend(cells)
        print(f"{db.name} {name}: {cells}", file=sys.stderr, flush=True)


def main() -> None:
    pairs = list(zip(sys.argv[1::2], sys.argv[2::2]))
    table: dict[str, list[str]] = {}
    for db, queries in pairs:
        run_set(Path(db), Path(queries), table)
    heads = [f"{Path(db).stem} {mode}" for db, _ in pairs for mode in ("keyword", "hybrid")]
    print("| variant | " + " | ".join(heads) + " |")
    print("|---" * (len(heads) + 1) + "|")
    for name, cells in table.items():
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
