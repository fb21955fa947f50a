"""The file format: connecting (with sqlite-vec loaded), the numbered migrations, the vector table.

``PRAGMA user_version`` records how many migrations have run and ``PRAGMA application_id``
marks the file as an edge-embed index.
"""

from __future__ import annotations

import json
import sys
import urllib.parse
import unicodedata
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import apsw

from edge_embed.errors import EdgeEmbedError
from edge_embed.store.keywords import cjk_bigram_document, has_cjk, keyword_texts

if TYPE_CHECKING:  # the coarse stage imports numpy: the CLI's server-client path must not
    from edge_embed.store.coarse import Progress

APPLICATION_ID = 0x45454D42  # "EEMB" in the SQLite header: this file is an edge-embed index
BUSY_TIMEOUT_MS = 5000  # a reader waits out a writer's commit instead of "database is locked"
# text, heading, relpath: the rank default the FTS5 tables are created with. Queries
# override it with keyword_search.BM25_COLUMN_WEIGHTS, so changing weights needs no migration.
FTS_COLUMN_WEIGHTS = (1.0, 2.0, 1.0)
KEYWORD_TABLES = ("chunks_fts", "chunks_stemmed", "chunks_cjk", "chunks_cjk_bigrams")  # every FTS5 table a chunk has rows in
WORD_TOKENIZER = "unicode61 remove_diacritics 2"  # chunks_fts: words as written, case and diacritics folded
STEMMED_TOKENIZER = f"porter {WORD_TOKENIZER}"  # chunks_stemmed: the same words, English suffixes removed
VEC_CHUNK_SIZE = 16  # rows per vec0 chunk (see create_vector_table)
PROGRESS_MIN_ROWS = 20_000  # a rebuild shorter than this is quiet


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


def _create_keyword_table(conn: apsw.Connection, name: str, tokenize: str) -> None:
    """A contentless FTS5 table over text, heading, relpath, weighted like ``chunks_fts``."""
    weights = ", ".join(map(str, FTS_COLUMN_WEIGHTS))
    conn.execute(
        f"""
        CREATE VIRTUAL TABLE {name} USING fts5(
            text, heading, path, content='', contentless_delete=1, tokenize='{tokenize}'
        );
        INSERT INTO {name}({name}, rank) VALUES('rank', 'bm25({weights})');
        """
    )


def _migration_2_cjk_bigrams_headings_paths(conn: apsw.Connection) -> None:
    """Short CJK terms by index lookup, Hangul as CJK, headings and file names in the CJK index.

    ``chunks_cjk`` (trigrams) gains the heading and path columns, and ``chunks_cjk_bigrams``
    holds each CJK run's bigrams (see ``cjk_bigram_document``) for 1-2 character terms,
    which a trigram index cannot find. Both are filled from the stored chunk texts, headings
    and relpaths: nothing is re-embedded.
    """
    conn.execute("DROP TABLE chunks_cjk")
    _create_keyword_table(conn, "chunks_cjk", "trigram")
    _create_keyword_table(conn, "chunks_cjk_bigrams", "ascii")
    rows = conn.execute("SELECT c.id, c.text, c.heading, f.relpath FROM chunks c JOIN files f ON f.id = c.file_id")
    for chunk_id, text, heading, relpath in rows.fetchall():
        write_cjk_rows(conn, chunk_id, text, heading or "", relpath)


def _migration_3_chunk_pages(conn: apsw.Connection) -> None:
    """First and last page of chunks from PDF and Word files; NULL for everything else,
    so an existing index gains the columns without re-embedding anything."""
    conn.execute(
        """
        ALTER TABLE chunks ADD COLUMN page_start INTEGER;
        ALTER TABLE chunks ADD COLUMN page_end INTEGER;
        """
    )


def _migration_4_coarse_vectors(conn: apsw.Connection) -> None:
    """Existing indexes get the coarse codes and the small vec0 chunks, from stored vectors."""
    raw = conn.execute("SELECT value FROM meta WHERE key = 'settings'").fetchall()
    if raw and table_exists(conn, "chunk_vectors"):
        rebuild_vector_tables(conn, int(json.loads(raw[0][0])["dims"]), tty_progress("building the coarse vector index"))


def _migration_5_stemmed_words(conn: apsw.Connection) -> None:
    """Keyword search finds other forms of a word ("indexing" for "indexed"): ``chunks_stemmed``
    holds the words of ``chunks_fts`` through FTS5's Porter stemmer, and a query searches
    both (see ``keywords.keyword_sources``), so an exact form still counts more than a
    related one. Filled from the stored chunk texts, headings and relpaths: nothing is
    re-embedded, and ``chunks_fts`` is unchanged."""
    _create_keyword_table(conn, "chunks_stemmed", STEMMED_TOKENIZER)
    conn.execute(
        "INSERT INTO chunks_stemmed(rowid, text, heading, path) "
        "SELECT c.id, c.text, coalesce(c.heading, ''), f.relpath FROM chunks c JOIN files f ON f.id = c.file_id"
    )


def _migration_6_neighbour_chunk_words(conn: apsw.Connection) -> None:
    """A chunk's keyword rows also hold its neighbours' words in the same section (see
    ``keywords.keyword_texts``): every keyword table is refilled from the stored chunk
    texts, headings and relpaths. Nothing is re-embedded; chunks and vectors are unchanged."""
    refill_keyword_rows(conn, keyword_texts)


def refill_keyword_rows(conn: apsw.Connection, texts: Callable[[list[tuple[str | None, str]]], list[str]]) -> None:
    """Every keyword table emptied and refilled, file by file (the chunks of one file in
    memory at a time), each chunk's rows holding ``texts`` of its file's (heading, text)."""
    for table in KEYWORD_TABLES:
        conn.execute(f"INSERT INTO {table}({table}) VALUES('delete-all')")
    files = conn.execute("SELECT id, relpath FROM files").fetchall()
    for file_id, relpath in files:
        chunks = conn.execute("SELECT id, heading, text FROM chunks WHERE file_id = ? ORDER BY seq", (file_id,)).fetchall()
        for (chunk_id, heading, _), words in zip(chunks, texts([(heading, text) for _, heading, text in chunks])):
            write_keyword_rows(conn, chunk_id, words, heading or "", relpath)


MIGRATIONS: tuple[Callable[[apsw.Connection], None], ...] = (
    _migration_1_initial_schema,
    _migration_2_cjk_bigrams_headings_paths,
    _migration_3_chunk_pages,
    _migration_4_coarse_vectors,
    _migration_5_stemmed_words,
    _migration_6_neighbour_chunk_words,
)
SCHEMA_VERSION = len(MIGRATIONS)
# Called before each migration a writer runs: (step, of how many, what it adds), so a
# command can say why its start takes long (migration 4 rewrites every vector).
MigrationProgress = Callable[[int, int, str], None]


def migration_name(number: int) -> str:
    """What migration ``number`` (1-based) adds, in words: its function's name, e.g. 'coarse vectors'."""
    return MIGRATIONS[number - 1].__name__.split("_", 3)[3].replace("_", " ")


def user_version(conn: apsw.Connection) -> int:
    """How many migrations the file has seen (0: a new, empty file)."""
    return int(conn.execute("PRAGMA user_version").fetchall()[0][0])


def pending_migrations(version: int) -> list[int]:
    """The numbers (1-based) of the migrations a file at schema ``version`` has not seen."""
    return list(range(version + 1, SCHEMA_VERSION + 1))


def create_vector_table(conn: apsw.Connection, dims: int) -> None:
    """The float vectors (vec0) and their coarse codes; created when the dimension is known.

    ``VEC_CHUNK_SIZE``: vec0 stores a chunk of rows in one blob, and SQLite reaches a byte
    of a long blob by walking its chain of overflow pages, so reading (or inserting) one
    vector costs time in proportion to the chunk's size: at 1024 dims the default 1024 rows
    made a point read 2.9 ms and inserts 1,000/s; 16 rows: 0.08 ms and 7,800/s, with the
    full scan as fast. The re-scoring stage reads hundreds of single vectors per query.
    """
    conn.execute(
        f"CREATE VIRTUAL TABLE chunk_vectors USING vec0("
        f"chunk_id INTEGER PRIMARY KEY, embedding float[{int(dims)}] distance_metric=l2, "
        f"chunk_size={VEC_CHUNK_SIZE})"
    )
    from edge_embed.store.coarse import create_coarse_table

    create_coarse_table(conn)


def rebuild_vector_tables(conn: apsw.Connection, dims: int, progress: Progress | None = None) -> None:
    """Rewrite ``chunk_vectors`` and ``chunk_bits`` from the stored vectors (no re-embedding).

    For the migration and for ``compact``: the vectors go through a plain table (vec0 tables
    cannot be renamed), come back in chunk id order, and leave no freed vec0 slots behind.
    Run it inside a transaction: a crash leaves the old tables. The copy lives in the index
    file itself, not in a TEMP table: SQLite puts those in $TMPDIR, often a small RAM disk,
    and a big index would then fail to open, blaming the wrong disk.
    """
    from edge_embed.store.coarse import fill_coarse_table

    total = int(conn.execute("SELECT count(*) FROM chunk_vectors_rowids").fetchall()[0][0])
    conn.execute("CREATE TABLE vector_copy(chunk_id INTEGER PRIMARY KEY, embedding BLOB NOT NULL)")
    conn.execute("INSERT INTO vector_copy SELECT chunk_id, embedding FROM chunk_vectors")
    conn.execute("DROP TABLE chunk_vectors")
    conn.execute("DROP TABLE IF EXISTS chunk_bits")
    create_vector_table(conn, dims)
    conn.execute("INSERT INTO chunk_vectors(chunk_id, embedding) SELECT chunk_id, embedding FROM vector_copy ORDER BY chunk_id")
    fill_coarse_table(conn, iter(conn.execute("SELECT chunk_id, embedding FROM vector_copy ORDER BY chunk_id")), total, progress)
    conn.execute("DROP TABLE vector_copy")


def tty_progress(what: str) -> Progress | None:
    """A progress line on stderr when it is a terminal and the job is big; else None."""
    if not sys.stderr.isatty():
        return None

    def show(done: int, total: int) -> None:
        if total >= PROGRESS_MIN_ROWS:
            end = "\n" if done >= total else ""
            print(f"\redge-embed: {what}: {done:,}/{total:,} chunks", end=end, file=sys.stderr, flush=True)

    return show


# Every vec0 table keyed by chunk_id: `status` reports their dead slots (sqlite-vec's
# shadow tables); a new vec0 table joins by being listed here and in rebuild_vector_tables.
VECTOR_TABLES = ("chunk_vectors",)


def table_exists(conn: apsw.Connection, name: str) -> bool:
    rows = conn.execute("SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = ?", (name,)).fetchall()
    return rows[0][0] == 1


def column_exists(conn: apsw.Connection, table: str, column: str) -> bool:
    rows = conn.execute("SELECT count(*) FROM pragma_table_info(?) WHERE name = ?", (table, column)).fetchall()
    return rows[0][0] == 1


# ------------------------------------------------------------------------ helpers
def write_keyword_rows(conn: apsw.Connection, chunk_id: int, words: str, heading: str, relpath: str) -> None:
    """A chunk's rows in every keyword table (``words``: its text with its neighbours', see
    ``keywords.keyword_texts``)."""
    for table in ("chunks_fts", "chunks_stemmed"):
        conn.execute(f"INSERT INTO {table}(rowid, text, heading, path) VALUES(?, ?, ?, ?)", (chunk_id, words, heading, relpath))
    write_cjk_rows(conn, chunk_id, words, heading, relpath)


def write_cjk_rows(conn: apsw.Connection, chunk_id: int, text: str, heading: str, relpath: str) -> None:
    """A chunk's rows in both CJK tables, when its text, heading or file name has CJK.

    Only such chunks go in, so an index without CJK pays nothing for these tables. Text is
    NFC, like queries (Hangul from macOS file names is often decomposed).
    """
    columns = [unicodedata.normalize("NFC", value) for value in (text, heading, relpath)]
    if not any(map(has_cjk, columns)):
        return
    conn.execute("INSERT INTO chunks_cjk(rowid, text, heading, path) VALUES(?, ?, ?, ?)", (chunk_id, *columns))
    conn.execute(
        "INSERT INTO chunks_cjk_bigrams(rowid, text, heading, path) VALUES(?, ?, ?, ?)",
        (chunk_id, *map(cjk_bigram_document, columns)),
    )


def connect(path: Path, create: bool, read_only: bool = False) -> apsw.Connection:
    if read_only:
        conn = _connect_read_only(path)
    else:
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


def _connect_read_only(path: Path) -> apsw.Connection:
    """``mode=ro`` when SQLite can still share the WAL's memory file; else ``immutable=1``
    (a folder nobody may write to: no writer can be changing the index)."""
    flags = apsw.SQLITE_OPEN_READONLY | apsw.SQLITE_OPEN_URI
    uri = "file:" + urllib.parse.quote(str(path))
    for parameters in ("?mode=ro", "?immutable=1"):
        try:
            conn = apsw.Connection(uri + parameters, flags=flags)
            conn.execute("SELECT count(*) FROM sqlite_schema").fetchall()  # opening is lazy: read once
            return conn
        except (apsw.CantOpenError, apsw.ReadOnlyError):
            continue
    raise EdgeEmbedError(f"cannot open the index file {path} read-only (is it readable?)")


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
