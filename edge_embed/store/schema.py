"""The file format: connecting (with sqlite-vec loaded), the numbered migrations, the vector table.

``PRAGMA user_version`` records how many migrations have run and ``PRAGMA application_id``
marks the file as an edge-embed index.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import apsw

from edge_embed.errors import EdgeEmbedError

APPLICATION_ID = 0x45454D42  # "EEMB" in the SQLite header: this file is an edge-embed index
BUSY_TIMEOUT_MS = 5000  # a reader waits out a writer's commit instead of "database is locked"
FTS_COLUMN_WEIGHTS = (1.0, 2.0, 1.0)  # text, heading, relpath: a heading hit says more


def _migration_1_initial_schema(conn: apsw.Connection) -> None:
    conn.execute(
        f"""
        PRAGMA application_id = {APPLICATION_ID};
        CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE roots(
            id INTEGER PRIMARY KEY,
            path TEXT NOT NULL UNIQUE,
            added_at REAL NOT NULL,
            last_indexed_at REAL
        );
        CREATE TABLE files(
            id INTEGER PRIMARY KEY,
            root_id INTEGER NOT NULL,
            relpath TEXT NOT NULL,
            path TEXT NOT NULL,
            size INTEGER NOT NULL,
            mtime_ns INTEGER NOT NULL,
            content_hash TEXT NOT NULL,
            indexed_at REAL NOT NULL,
            UNIQUE(root_id, relpath)
        );
        CREATE TABLE chunks(
            id INTEGER PRIMARY KEY AUTOINCREMENT, -- never reused: a result id keeps meaning one chunk
            file_id INTEGER NOT NULL,
            seq INTEGER NOT NULL,
            start_line INTEGER NOT NULL,
            end_line INTEGER NOT NULL,
            heading TEXT,
            text TEXT NOT NULL,
            text_hash TEXT NOT NULL
        );
        CREATE INDEX chunks_by_file ON chunks(file_id, seq);
        CREATE INDEX chunks_by_text_hash ON chunks(text_hash);
        CREATE VIRTUAL TABLE chunks_fts USING fts5(
            text, heading, path,
            content='', contentless_delete=1, tokenize='unicode61 remove_diacritics 2'
        );
        INSERT INTO chunks_fts(chunks_fts, rank) VALUES('rank', 'bm25({", ".join(map(str, FTS_COLUMN_WEIGHTS))})');
        CREATE VIRTUAL TABLE chunks_cjk USING fts5(
            text, content='', contentless_delete=1, tokenize='trigram'
        );
        """
    )


MIGRATIONS: tuple[Callable[[apsw.Connection], None], ...] = (_migration_1_initial_schema,)
SCHEMA_VERSION = len(MIGRATIONS)


def create_vector_table(conn: apsw.Connection, dims: int) -> None:
    """Created when the dimension is known (first index), not by a migration."""
    conn.execute(
        f"CREATE VIRTUAL TABLE chunk_vectors USING vec0("
        f"chunk_id INTEGER PRIMARY KEY, embedding float[{int(dims)}] distance_metric=l2)"
    )


# ------------------------------------------------------------------------ helpers
def connect(path: Path, create: bool) -> apsw.Connection:
    flags = apsw.SQLITE_OPEN_READWRITE | (apsw.SQLITE_OPEN_CREATE if create else 0)
    try:
        conn = apsw.Connection(str(path), flags=flags)
    except apsw.CantOpenError:
        raise EdgeEmbedError(f"cannot open the index file {path} (is it a folder, or not writable?)") from None
    conn.setbusytimeout(BUSY_TIMEOUT_MS)
    conn.enable_load_extension(True)
    _sqlite_vec().load(conn)
    conn.enable_load_extension(False)
    return conn


def sqlite_vec_version() -> str:
    """The loaded sqlite-vec version, e.g. 'v0.1.9' (for `edge-embed doctor`)."""
    conn = apsw.Connection(":memory:")
    try:
        conn.enable_load_extension(True)
        _sqlite_vec().load(conn)
        return str(conn.execute("SELECT vec_version()").fetchall()[0][0])
    finally:
        conn.close()


def _sqlite_vec():
    """sqlite_vec imports numpy: only a connection needs it, not importing the store."""
    import sqlite_vec

    return sqlite_vec
