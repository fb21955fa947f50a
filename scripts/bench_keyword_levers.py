"""Keyword-side levers on existing dev-set indexes: BM25 field weights and Porter stemming.

Each variant is a scratch copy of the index (.bench/levers/, VACUUM INTO) changed in its
keyword tables only, so the vectors, chunks and query embeddings stay the same and only
the keyword list (and through it hybrid) can move:

- ``weights T,H,P``: FTS5's bm25() column weights for chunk text, heading and file path
  (the index has ``schema.FTS_COLUMN_WEIGHTS``); ``1,0,0`` leaves headings and file names
  out of keyword search, the keyword half of the chunk-header lever;
- ``porter``: ``chunks_fts`` rebuilt with ``tokenize='porter unicode61 remove_diacritics 2'``
  from the stored chunk texts, headings and paths (what a stemming migration would do).

Usage: python scripts/bench_keyword_levers.py SET-DB QUERIES [SET-DB QUERIES ...]
Prints one Markdown table: Recall@10 / MRR@10 of keyword and hybrid per variant and index.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import apsw

from edge_embed.api import Index
from edge_embed.cli.options import settings_from_options
from edge_embed.evaluate import evaluate, load_queries
from edge_embed.store import Store
from edge_embed.store.schema import FTS_COLUMN_WEIGHTS, connect

SCRATCH = Path(".bench/levers")
Change = Callable[[apsw.Connection], None]


def set_weights(weights: tuple[float, ...]) -> Change:
    def change(conn: apsw.Connection) -> None:
        spec = ", ".join(map(str, weights))
        conn.execute(f"INSERT INTO chunks_fts(chunks_fts, rank) VALUES('rank', 'bm25({spec})')")

    return change


def porter(conn: apsw.Connection) -> None:
    """chunks_fts again, stemmed, filled from the chunks and their files' relpaths."""
    spec = ", ".join(map(str, FTS_COLUMN_WEIGHTS))
    conn.execute(
        f"""
        DROP TABLE chunks_fts;
        CREATE VIRTUAL TABLE chunks_fts USING fts5(
            text, heading, path, content='', contentless_delete=1,
            tokenize='porter unicode61 remove_diacritics 2'
        );
        INSERT INTO chunks_fts(chunks_fts, rank) VALUES('rank', 'bm25({spec})');
        INSERT INTO chunks_fts(rowid, text, heading, path)
            SELECT c.id, c.text, coalesce(c.heading, ''), f.relpath FROM chunks c JOIN files f ON f.id = c.file_id;
        """
    )


VARIANTS: dict[str, Change | None] = {
    f"as indexed (weights {','.join(f'{w:g}' for w in FTS_COLUMN_WEIGHTS)})": None,
    "weights 1,1,1": set_weights((1.0, 1.0, 1.0)),
    "weights 1,2,2": set_weights((1.0, 2.0, 2.0)),
    "weights 1,4,4": set_weights((1.0, 4.0, 4.0)),
    "weights 1,0,0 (no headings, no file names)": set_weights((1.0, 0.0, 0.0)),
    "porter stemming": porter,
}


def scratch_copy(db: Path, name: str, change: Change) -> Path:
    """A copy of ``db`` with ``change`` applied; an old copy is replaced."""
    SCRATCH.mkdir(parents=True, exist_ok=True)
    target = SCRATCH / f"{db.stem}-{abs(hash(name)) % 10**8}.db"
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
    runtime = {"gpu_layers": None, "ctx": None, "batch": None, "threads": 1, "force_cpu": False}
    with Store.open(db, create=False) as store:
        embed = Index.open(db, settings_from_options(**runtime)).query_embedder(store, None)
    vectors: dict[str, object] = {}

    def embed_once(text: str):
        if text not in vectors:
            vectors[text] = embed(text)
        return vectors[text]

    for name, change in VARIANTS.items():
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
