"""The index file: the only module that writes SQL.

One SQLite file per index, opened through apsw because the stdlib ``sqlite3`` module of
many Pythons cannot load extensions. It holds:

* ``roots`` / ``files`` / ``chunks``: what was indexed, where, and the chunk texts;
* ``chunk_vectors``: a sqlite-vec ``vec0`` table keyed by chunk id. L2 distance on
  L2-normalised vectors ranks exactly like cosine and is sqlite-vec's fastest kernel;
* ``chunks_fts``: FTS5 (unicode61, diacritics folded) over text, heading and relpath for
  BM25 keyword search;
* ``chunks_cjk``: FTS5 with the ``trigram`` tokenizer, because unicode61 does not segment
  Chinese or Japanese. Only chunks whose text contains CJK go in, so an index of
  English text does not pay for a trigram index several times the size of its text.

Both FTS tables are contentless (``contentless_delete=1``): the text is stored once, in
``chunks``. Every write keeps chunks, vectors and both FTS tables in one transaction.
The schema evolves through the numbered ``MIGRATIONS``; ``PRAGMA user_version`` records
how many have run and ``PRAGMA application_id`` marks the file as an edge-embed index.
"""

from __future__ import annotations

import fnmatch
import json
import math
import os
import re
import time
import unicodedata
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import apsw
import numpy as np
import sqlite_vec

from edge_embed.errors import EdgeEmbedError, IndexMismatch

APPLICATION_ID = 0x45454D42  # "EEMB" in the SQLite header: this file is an edge-embed index
BUSY_TIMEOUT_MS = 5000  # a reader waits out a writer's commit instead of "database is locked"
MAX_KNN_K = 4096  # sqlite-vec 0.1.x refuses larger k in the KNN form
MAX_QUERY_TERMS = 64  # a pasted page must not become a 5000-way OR
KEYWORD_POOL_FACTOR = 4  # candidates per keyword source when several are summed
FTS_COLUMN_WEIGHTS = (1.0, 2.0, 1.0)  # text, heading, relpath: a heading hit says more
BM25_K1 = 1.2  # FTS5's own bm25 constant, so substring scores sum on the same scale

_CJK_CHARS = (
    "\u3005\u3040-\u30ff\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff66-\uff9f"
    "\U00020000-\U0003134f"
)  # Han (with extensions), kana, the iteration mark: scripts written without spaces
_CJK_RUN = re.compile(f"[{_CJK_CHARS}]+")
_CJK_SPLIT = re.compile(f"([{_CJK_CHARS}]+)")
_WORD = re.compile(r"[^\W_]+")  # letters and digits: FTS5's unicode61 separates on the rest
_TRIGRAM = 3


# ------------------------------------------------------------------------ records
@dataclass(frozen=True)
class IndexSettings:
    """What an index is built with; vectors or chunks made otherwise must not be mixed in."""

    model_label: str
    model_file: str
    model_size: int
    model_hash: str
    dims: int
    chunk_tokens: int
    overlap: int
    instruction: str | None = None
    chunker_version: int = 1

    def describe(self) -> str:
        return f"{self.model_label} (dims {self.dims}, chunks of {self.chunk_tokens} tokens, overlap {self.overlap})"


@dataclass(frozen=True)
class RootInfo:
    id: int
    path: str
    last_indexed_at: float | None
    files: int
    chunks: int


@dataclass(frozen=True)
class FileState:
    """What the indexer compares against the disk to skip unchanged files."""

    id: int
    size: int
    mtime_ns: int
    content_hash: str


@dataclass(frozen=True)
class NewChunk:
    seq: int
    start_line: int
    end_line: int
    heading: str | None
    text: str
    text_hash: str  # sha256 of the exact text embedded: the dedup key
    vector: np.ndarray


@dataclass(frozen=True)
class ChunkRecord:
    id: int
    root: str
    path: str
    relpath: str
    start_line: int
    end_line: int
    heading: str | None
    text: str


# ------------------------------------------------------------------------ migrations
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


def _create_vector_table(conn: apsw.Connection, dims: int) -> None:
    """Created when the dimension is known (first index), not by a migration."""
    conn.execute(
        f"CREATE VIRTUAL TABLE chunk_vectors USING vec0("
        f"chunk_id INTEGER PRIMARY KEY, embedding float[{int(dims)}] distance_metric=l2)"
    )


# ------------------------------------------------------------------------ helpers
def _connect(path: Path, create: bool) -> apsw.Connection:
    flags = apsw.SQLITE_OPEN_READWRITE | (apsw.SQLITE_OPEN_CREATE if create else 0)
    try:
        conn = apsw.Connection(str(path), flags=flags)
    except apsw.CantOpenError:
        raise EdgeEmbedError(f"cannot open the index file {path} (is it a folder, or not writable?)") from None
    conn.setbusytimeout(BUSY_TIMEOUT_MS)
    conn.enable_load_extension(True)
    sqlite_vec.load(conn)
    conn.enable_load_extension(False)
    return conn


def sqlite_vec_version() -> str:
    """The loaded sqlite-vec version, e.g. 'v0.1.9' (for `edge-embed doctor`)."""
    conn = apsw.Connection(":memory:")
    try:
        conn.enable_load_extension(True)
        sqlite_vec.load(conn)
        return str(conn.execute("SELECT vec_version()").fetchall()[0][0])
    finally:
        conn.close()


def _absolute(path: str | os.PathLike[str]) -> str:
    """Roots and prefixes are compared as resolved absolute paths, like the indexer stores them."""
    return str(Path(path).expanduser().resolve())


def _vector_blob(vector: np.ndarray, dims: int) -> bytes:
    array = np.ascontiguousarray(vector, dtype=np.float32).reshape(-1)
    if array.shape[0] != dims:
        raise ValueError(f"vector has {array.shape[0]} dimensions, the index stores {dims}")
    return array.tobytes()


def _chunk_filter(file_ids: list[int] | None, column: str) -> tuple[str, list[object]]:
    """An ``AND column IN (chunks of these files)`` clause and its parameter; '' for no filter."""
    if file_ids is None:
        return "", []
    return (
        f"AND {column} IN (SELECT id FROM chunks WHERE file_id IN (SELECT value FROM json_each(?)))",
        [json.dumps(file_ids)],
    )


def _has_cjk(text: str) -> bool:
    return _CJK_RUN.search(text) is not None


def _under_prefix(path: str, prefix: str) -> bool:
    """True for the prefix itself and anything inside it ('/a/b' does not cover '/a/bc')."""
    return path == prefix or path.startswith(prefix.rstrip("/" + os.sep) + os.sep)


def _matches_glob(relpath: str, glob: str) -> bool:
    """A glob with a '/' matches the relpath; one without also matches the file name."""
    if fnmatch.fnmatch(relpath, glob):
        return True
    return "/" not in glob and fnmatch.fnmatch(relpath.rsplit("/", 1)[-1], glob)


# ------------------------------------------------------------------------ keyword query
@dataclass(frozen=True)
class KeywordTerms:
    """A user's keyword text split by where each term can be found.

    ``words`` go to the unicode61 table. CJK runs of 3+ characters go to the trigram
    table as the run itself plus each of its trigrams (so a sentence typed without
    spaces still matches text that shares only some of its words). Shorter CJK runs
    (most Chinese words are two characters) cannot be found through a trigram index and
    are matched as substrings of the CJK chunks.
    """

    words: tuple[str, ...] = ()
    cjk_grams: tuple[str, ...] = ()
    cjk_short: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.words or self.cjk_grams or self.cjk_short)


def _cjk_grams(run: str) -> list[str]:
    if len(run) <= _TRIGRAM:
        return [run]
    return [run] + [run[i : i + _TRIGRAM] for i in range(len(run) - _TRIGRAM + 1)]


def keyword_terms(text: str) -> KeywordTerms:
    """Split free text into searchable terms; punctuation and operators are never syntax."""
    words: dict[str, str] = {}  # casefolded -> as typed: "Walrus walrus" is one term
    grams: dict[str, None] = {}  # dicts as ordered sets
    short: dict[str, None] = {}
    for match in _WORD.finditer(unicodedata.normalize("NFC", text)):
        for piece in filter(None, _CJK_SPLIT.split(match.group())):
            if not _has_cjk(piece):
                words.setdefault(piece.casefold(), piece)
            elif len(piece) < _TRIGRAM:
                short[piece] = None
            else:
                grams.update(dict.fromkeys(_cjk_grams(piece)))
        if len(words) + len(grams) + len(short) >= MAX_QUERY_TERMS:
            break
    kept_words = list(words.values())[:MAX_QUERY_TERMS]
    kept_grams = list(grams)[: MAX_QUERY_TERMS - len(kept_words)]
    kept_short = list(short)[: MAX_QUERY_TERMS - len(kept_words) - len(kept_grams)]
    return KeywordTerms(tuple(kept_words), tuple(kept_grams), tuple(kept_short))


def fts5_phrases(terms: Iterable[str]) -> str | None:
    """Quote each term as an FTS5 string ("" escapes a quote) and OR them, or None."""
    quoted = ['"' + term.replace('"', '""') + '"' for term in terms]
    return " OR ".join(quoted) or None


def fts5_query(text: str) -> str | None:
    """The MATCH expression for ``chunks_fts`` from free text: its words, quoted, ORed.

    OR (not AND) because BM25 already ranks chunks with more of the words higher, and a
    query word missing from a relevant chunk should not hide it. None when the text has
    no word to search for. CJK runs are searched through the trigram table instead (see
    ``keyword_terms``).
    """
    return fts5_phrases(keyword_terms(text).words)


def _bm25_idf(total: int, hits: int) -> float:
    """FTS5's idf, clamped like FTS5 does so very common terms still count a little."""
    idf = math.log((total - hits + 0.5) / (hits + 0.5))
    return idf if idf > 0 else 1e-6


# ------------------------------------------------------------------------ writer lock
if os.name == "nt":  # pragma: no cover - exercised on Windows only
    import msvcrt

    _LOCK_OFFSET = 1 << 20  # lock a byte past the pid so readers can still read the pid

    def _try_lock(fd: int) -> bool:
        os.lseek(fd, _LOCK_OFFSET, os.SEEK_SET)
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True

    def _unlock(fd: int) -> None:
        os.lseek(fd, _LOCK_OFFSET, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)

else:
    import fcntl

    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)


def _read_pid(fd: int) -> str:
    os.lseek(fd, 0, os.SEEK_SET)
    return os.read(fd, 32).decode("ascii", "replace").strip() or "unknown"


def _write_pid(fd: int) -> None:
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, f"{os.getpid()}\n".encode("ascii"))


# ------------------------------------------------------------------------ the store
class Store:
    """One open index file. Not thread-safe: one Store per thread or process."""

    def __init__(self, conn: apsw.Connection, path: Path) -> None:
        self._conn = conn
        self.path = path

    # ---------------------------------------------------------------- open / close
    @classmethod
    def open(cls, path: str | os.PathLike[str], *, create: bool = True) -> Store:
        """Open (or create) an index; refuse files that are not edge-embed indexes."""
        path = Path(path).expanduser().absolute()
        if not create and not path.is_file():
            raise EdgeEmbedError(f"no index at {path} yet: build one with `edge-embed index FOLDER`")
        if create:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise EdgeEmbedError(f"cannot create the folder for the index {path}: {exc.strerror}") from None
        conn = _connect(path, create)
        try:
            cls._check_identity(conn, path, create)
            store = cls(conn, path)
            store._prepare()
        except BaseException:
            conn.close()
            raise
        return store

    def _prepare(self) -> None:
        """WAL so readers never wait for the indexer; then bring the schema up to date."""
        try:
            self._conn.execute("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;")
            self._migrate()
        except (apsw.ReadOnlyError, apsw.CantOpenError):
            raise EdgeEmbedError(
                f"cannot write the index {self.path} (or its -wal/-shm files beside it); check the permissions"
            ) from None

    @staticmethod
    def _check_identity(conn: apsw.Connection, path: Path, create: bool) -> None:
        """Before touching anything: is this an edge-embed index, an empty file, or foreign?"""
        try:
            app_id = conn.execute("PRAGMA application_id").fetchall()[0][0]
            version = conn.execute("PRAGMA user_version").fetchall()[0][0]
            objects = conn.execute("SELECT count(*) FROM sqlite_schema").fetchall()[0][0]
        except (apsw.NotADBError, apsw.CorruptError):
            raise EdgeEmbedError(f"{path} is not an edge-embed index (not an SQLite database); pass another --db") from None
        if app_id == APPLICATION_ID:
            if version > SCHEMA_VERSION:
                raise EdgeEmbedError(
                    f"{path} was written by a newer edge-embed (schema {version}, this one knows "
                    f"{SCHEMA_VERSION}); upgrade edge-embed"
                )
            return
        if objects:
            raise EdgeEmbedError(f"{path} is an SQLite database but not an edge-embed index; pass another --db")
        if not create:
            raise EdgeEmbedError(f"{path} is empty, not an edge-embed index: build one with `edge-embed index FOLDER`")

    def _migrate(self) -> None:
        """Run the migrations this file has not seen, in one transaction (all or none)."""
        if self.schema_version() >= SCHEMA_VERSION:
            return
        with self.transaction():
            for number in range(self.schema_version(), SCHEMA_VERSION):
                MIGRATIONS[number](self._conn)
                self._conn.execute(f"PRAGMA user_version = {number + 1}")

    def schema_version(self) -> int:
        return int(self._scalar("PRAGMA user_version"))

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ---------------------------------------------------------------- transactions
    @contextmanager
    def transaction(self) -> Iterator[None]:
        """A write transaction; nested ones become savepoints of the outer one.

        ``BEGIN IMMEDIATE`` takes the write lock up front, so a second writer waits for the
        busy timeout instead of failing half-way when its read turns into a write. Callers
        may wrap several ``write_file`` calls in one to commit less often.
        """
        if self._conn.in_transaction:
            with self._conn:
                yield
            return
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield
            self._conn.execute("COMMIT")
        except BaseException:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            raise

    def _scalar(self, sql: str, params: Sequence[object] = ()) -> object:
        rows = self._conn.execute(sql, params).fetchall()
        return rows[0][0] if rows else None

    def _has_table(self, name: str) -> bool:
        return self._scalar("SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = ?", (name,)) == 1

    @contextmanager
    def writer_lock(self) -> Iterator[None]:
        """Fail fast when another `edge-embed index` is writing this index (OS file lock)."""
        lock_path = Path(f"{self.path}.lock")
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            if not _try_lock(fd):
                raise EdgeEmbedError(
                    f"another `edge-embed index` is writing to {self.path} (pid {_read_pid(fd)}); wait for it to finish"
                )
            try:
                _write_pid(fd)
                yield
            finally:
                os.ftruncate(fd, 0)
                _unlock(fd)
        finally:
            os.close(fd)

    # ---------------------------------------------------------------- settings
    def settings(self) -> IndexSettings | None:
        raw = self._scalar("SELECT value FROM meta WHERE key = 'settings'")
        return IndexSettings(**json.loads(str(raw))) if raw is not None else None

    def _save_settings(self, settings: IndexSettings) -> None:
        self._conn.execute(
            "INSERT INTO meta(key, value) VALUES('settings', ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (json.dumps(asdict(settings)),),
        )

    def init_settings(self, settings: IndexSettings) -> None:
        """First index: record the settings and create the vector table of their dimension."""
        if settings.dims <= 0:
            raise ValueError(f"dims must be positive, got {settings.dims}")
        with self.transaction():
            if self.settings() is not None:
                self.check_settings(settings)
                return
            self._save_settings(settings)
            _create_vector_table(self._conn, settings.dims)

    def check_settings(self, wanted: IndexSettings) -> None:
        """Raise IndexMismatch naming what differs from how this index was built."""
        stored = self.settings()
        if stored is None:
            return
        differences = _settings_differences(stored, wanted)
        if differences:
            raise IndexMismatch(
                f"the index {self.path} was built with {stored.describe()}; you asked for "
                f"{wanted.describe()} ({', '.join(differences)} differ); rebuild it with "
                f"`edge-embed index --rebuild FOLDER...` or use --db for a separate index"
            )

    def set_instruction(self, instruction: str | None) -> None:
        """The default query task of this index (None: the model's default)."""
        with self.transaction():
            self._save_settings(replace(self._require_settings(), instruction=instruction))

    def _require_settings(self) -> IndexSettings:
        stored = self.settings()
        if stored is None:
            raise EdgeEmbedError(f"{self.path} has no model yet: build it with `edge-embed index FOLDER` first")
        return stored

    def _dims(self) -> int:
        return self._require_settings().dims

    def reset(self) -> None:
        """Drop everything (for --rebuild) and recreate the empty schema."""
        with self.transaction():
            tables = self._conn.execute(
                "SELECT name, sql LIKE 'CREATE VIRTUAL TABLE%' AS virtual FROM sqlite_schema "
                "WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY virtual DESC"
            ).fetchall()
            for name, _virtual in tables:
                if self._has_table(name):  # a virtual table's drop already took its shadow tables
                    self._conn.execute(f'DROP TABLE "{name}"')
            self._conn.execute("PRAGMA user_version = 0")
            self._migrate()

    # ---------------------------------------------------------------- roots
    def add_root(self, path: str | os.PathLike[str]) -> int:
        absolute = _absolute(path)
        with self.transaction():
            self._conn.execute(
                "INSERT INTO roots(path, added_at) VALUES(?, ?) ON CONFLICT(path) DO NOTHING", (absolute, time.time())
            )
            return int(self._scalar("SELECT id FROM roots WHERE path = ?", (absolute,)))

    def root_paths(self) -> list[str]:
        """The indexed folders alone: cheap, unlike roots(), which counts every chunk."""
        return [row[0] for row in self._conn.execute("SELECT path FROM roots ORDER BY path")]

    def chunk_count(self) -> int:
        return self._count("chunks")

    def roots(self) -> list[RootInfo]:
        rows = self._conn.execute(
            """
            SELECT r.id, r.path, r.last_indexed_at,
                   (SELECT count(*) FROM files f WHERE f.root_id = r.id),
                   (SELECT count(*) FROM chunks c JOIN files f ON f.id = c.file_id WHERE f.root_id = r.id)
            FROM roots r ORDER BY r.path
            """
        ).fetchall()
        return [RootInfo(*row) for row in rows]

    def remove_root(self, path: str | os.PathLike[str]) -> bool:
        """Forget a root with all its files, chunks, vectors and keyword rows."""
        with self.transaction():
            root_id = self._scalar("SELECT id FROM roots WHERE path = ?", (_absolute(path),))
            if root_id is None:
                return False
            file_ids = [row[0] for row in self._conn.execute("SELECT id FROM files WHERE root_id = ?", (root_id,))]
            for file_id in file_ids:
                self._delete_file_rows(file_id)
            self._conn.execute("DELETE FROM roots WHERE id = ?", (root_id,))
        return True

    def mark_indexed(self, root_id: int) -> None:
        with self.transaction():
            self._conn.execute("UPDATE roots SET last_indexed_at = ? WHERE id = ?", (time.time(), root_id))

    # ---------------------------------------------------------------- files
    def file_states(self, root_id: int) -> dict[str, FileState]:
        rows = self._conn.execute(
            "SELECT relpath, id, size, mtime_ns, content_hash FROM files WHERE root_id = ?", (root_id,)
        )
        return {relpath: FileState(*state) for relpath, *state in rows}

    def touch_file(self, file_id: int, size: int, mtime_ns: int) -> None:
        """Same content, new stat (e.g. a `touch` or a checkout): no re-embedding."""
        with self.transaction():
            self._conn.execute("UPDATE files SET size = ?, mtime_ns = ? WHERE id = ?", (size, mtime_ns, file_id))

    def write_file(
        self,
        root_id: int,
        relpath: str,
        path: str,
        size: int,
        mtime_ns: int,
        content_hash: str,
        chunks: Sequence[NewChunk],
    ) -> None:
        """Replace any previous version of a file with these chunks, in one transaction.

        A crash or Ctrl-C leaves either the old version or the new one, never a mix.
        """
        dims = self._dims()
        blobs = [_vector_blob(chunk.vector, dims) for chunk in chunks]  # validate before writing
        with self.transaction():
            file_id = int(
                self._scalar(
                    """
                    INSERT INTO files(root_id, relpath, path, size, mtime_ns, content_hash, indexed_at)
                    VALUES(?, ?, ?, ?, ?, ?, ?)
                    ON CONFLICT(root_id, relpath) DO UPDATE SET path = excluded.path, size = excluded.size,
                        mtime_ns = excluded.mtime_ns, content_hash = excluded.content_hash,
                        indexed_at = excluded.indexed_at
                    RETURNING id
                    """,
                    (root_id, relpath, path, size, mtime_ns, content_hash, time.time()),
                )
            )
            self._delete_chunk_rows(file_id)
            for chunk, blob in zip(chunks, blobs):
                self._insert_chunk(file_id, relpath, chunk, blob)

    def _insert_chunk(self, file_id: int, relpath: str, chunk: NewChunk, blob: bytes) -> None:
        self._conn.execute(
            "INSERT INTO chunks(file_id, seq, start_line, end_line, heading, text, text_hash) VALUES(?, ?, ?, ?, ?, ?, ?)",
            (file_id, chunk.seq, chunk.start_line, chunk.end_line, chunk.heading, chunk.text, chunk.text_hash),
        )
        chunk_id = self._conn.last_insert_rowid()
        self._conn.execute("INSERT INTO chunk_vectors(chunk_id, embedding) VALUES(?, ?)", (chunk_id, blob))
        self._conn.execute(
            "INSERT INTO chunks_fts(rowid, text, heading, path) VALUES(?, ?, ?, ?)",
            (chunk_id, chunk.text, chunk.heading or "", relpath),
        )
        if _has_cjk(chunk.text):
            self._conn.execute("INSERT INTO chunks_cjk(rowid, text) VALUES(?, ?)", (chunk_id, chunk.text))

    def delete_file(self, file_id: int) -> None:
        with self.transaction():
            self._delete_file_rows(file_id)

    def _delete_file_rows(self, file_id: int) -> None:
        self._delete_chunk_rows(file_id)
        self._conn.execute("DELETE FROM files WHERE id = ?", (file_id,))

    def _delete_chunk_rows(self, file_id: int) -> None:
        """One point delete per virtual table and chunk: vec0 would scan for an IN list."""
        ids = [(row[0],) for row in self._conn.execute("SELECT id FROM chunks WHERE file_id = ?", (file_id,))]
        if not ids:
            return
        self._conn.executemany("DELETE FROM chunk_vectors WHERE chunk_id = ?", ids)
        self._conn.executemany("DELETE FROM chunks_fts WHERE rowid = ?", ids)
        self._conn.executemany("DELETE FROM chunks_cjk WHERE rowid = ?", ids)
        self._conn.execute("DELETE FROM chunks WHERE file_id = ?", (file_id,))

    def vectors_for_hashes(self, hashes: Iterable[str]) -> dict[str, np.ndarray]:
        """Stored vectors for embed-text hashes anywhere in the index (skip re-embedding)."""
        wanted = list(dict.fromkeys(hashes))
        if not wanted or not self._has_table("chunk_vectors"):
            return {}
        found: dict[str, np.ndarray] = {}
        with self._conn:  # one snapshot for both lookups
            owners = self._conn.execute(
                "SELECT text_hash, min(id) FROM chunks WHERE text_hash IN (SELECT value FROM json_each(?)) GROUP BY text_hash",
                (json.dumps(wanted),),
            ).fetchall()
            for digest, chunk_id in owners:
                blob = self._scalar("SELECT embedding FROM chunk_vectors WHERE chunk_id = ?", (chunk_id,))
                if blob is not None:
                    found[digest] = np.frombuffer(blob, dtype=np.float32).copy()
        return found

    # ---------------------------------------------------------------- search
    def _filtered_file_ids(self, path_prefixes: Sequence[str], globs: Sequence[str]) -> list[int] | None:
        """Files passing the filters (prefixes OR'ed, globs OR'ed, both AND'ed); None: no filter."""
        if not path_prefixes and not globs:
            return None
        prefixes = [_absolute(prefix) for prefix in path_prefixes]
        return [
            file_id
            for file_id, relpath, path in self._conn.execute("SELECT id, relpath, path FROM files")
            if (not prefixes or any(_under_prefix(path, prefix) for prefix in prefixes))
            and (not globs or any(_matches_glob(relpath, glob) for glob in globs))
        ]

    def vector_search(
        self, query_vec: np.ndarray, k: int, *, path_prefixes: Sequence[str] = (), globs: Sequence[str] = ()
    ) -> list[tuple[int, float]]:
        """The k chunks nearest the query: (chunk_id, L2 distance), nearest first.

        Filters are applied inside the KNN (``chunk_id IN (...)``), so a filter that keeps
        1% of the index still returns k results when k exist. sqlite-vec caps the KNN at
        4096; a larger k is answered by an exact scan with ``vec_distance_l2``.
        """
        blob = _vector_blob(query_vec, self._dims())
        if k <= 0:
            return []
        with self._conn:  # one snapshot for the filter and the search
            file_ids = self._filtered_file_ids(path_prefixes, globs)
            if file_ids == []:
                return []
            where, params = _chunk_filter(file_ids, "chunk_id")
            if k <= MAX_KNN_K:
                sql = f"SELECT chunk_id, distance FROM chunk_vectors WHERE embedding MATCH ? AND k = ? {where} ORDER BY distance"
                rows = self._conn.execute(sql, [blob, k, *params]).fetchall()
            else:
                sql = (
                    f"SELECT chunk_id, vec_distance_l2(embedding, ?) AS distance FROM chunk_vectors "
                    f"WHERE 1 {where} ORDER BY distance, chunk_id LIMIT ?"
                )
                rows = self._conn.execute(sql, [blob, *params, k]).fetchall()
        return [(int(chunk_id), float(distance)) for chunk_id, distance in rows]

    def keyword_search(
        self, text: str, k: int, *, path_prefixes: Sequence[str] = (), globs: Sequence[str] = ()
    ) -> list[tuple[int, float]]:
        """BM25 keyword search: (chunk_id, score) with higher = better, best first.

        The user's text never reaches MATCH raw: ``keyword_terms`` turns it into quoted
        terms. Up to three sources score a chunk, and their scores are added: words by
        the unicode61 table, long CJK runs by the trigram table, short CJK runs by a
        substring count scored with BM25's idf and term saturation. BM25 is itself a sum
        over query terms, so adding the per-source sums gives a chunk credit for every
        term it contains, whichever table found it. With several sources each contributes
        its top ``k * KEYWORD_POOL_FACTOR`` candidates; a chunk outside a pool gets 0
        from that source.
        """
        terms = keyword_terms(text)
        if not terms or k <= 0:
            return []
        sources = [
            source
            for source, wanted in (
                (self._words_scores, terms.words),
                (self._trigram_scores, terms.cjk_grams),
                (self._short_cjk_scores, terms.cjk_short),
            )
            if wanted
        ]
        pool = k if len(sources) == 1 else k * KEYWORD_POOL_FACTOR
        scores: dict[int, float] = defaultdict(float)
        with self._conn:  # one snapshot for all sources
            file_ids = self._filtered_file_ids(path_prefixes, globs)
            if file_ids == []:
                return []
            for source in sources:
                for chunk_id, score in source(terms, pool, file_ids):
                    scores[chunk_id] += score
        ranked = sorted(scores.items(), key=lambda item: (-item[1], item[0]))
        return ranked[:k]

    def _fts_scores(self, table: str, expression: str, pool: int, file_ids: list[int] | None) -> list[tuple[int, float]]:
        where, params = _chunk_filter(file_ids, "rowid")
        sql = f"SELECT rowid, -rank FROM {table} WHERE {table} MATCH ? {where} ORDER BY rank LIMIT ?"
        return [(int(r), float(s)) for r, s in self._conn.execute(sql, [expression, *params, pool])]

    def _words_scores(self, terms: KeywordTerms, pool: int, file_ids: list[int] | None) -> list[tuple[int, float]]:
        return self._fts_scores("chunks_fts", str(fts5_phrases(terms.words)), pool, file_ids)

    def _trigram_scores(self, terms: KeywordTerms, pool: int, file_ids: list[int] | None) -> list[tuple[int, float]]:
        return self._fts_scores("chunks_cjk", str(fts5_phrases(terms.cjk_grams)), pool, file_ids)

    def _short_cjk_scores(self, terms: KeywordTerms, pool: int, file_ids: list[int] | None) -> list[tuple[int, float]]:
        """Substring matches over the CJK chunks only, scored like BM25 without length norm."""
        where, params = _chunk_filter(file_ids, "c.id")
        any_term = " OR ".join(["instr(c.text, ?) > 0"] * len(terms.cjk_short))
        rows = self._conn.execute(
            f"SELECT c.id, c.text FROM chunks_cjk t JOIN chunks c ON c.id = t.rowid WHERE ({any_term}) {where}",
            [*terms.cjk_short, *params],
        ).fetchall()
        total = int(self._scalar("SELECT count(*) FROM chunks_cjk"))
        scores = [0.0] * len(rows)
        for term in terms.cjk_short:
            frequencies = [text.count(term) for _, text in rows]
            idf = _bm25_idf(total, sum(1 for tf in frequencies if tf))
            for i, tf in enumerate(frequencies):
                scores[i] += idf * tf * (BM25_K1 + 1) / (tf + BM25_K1)
        ranked = sorted(zip((row[0] for row in rows), scores), key=lambda item: -item[1])
        return [(int(chunk_id), score) for chunk_id, score in ranked[:pool]]

    # ---------------------------------------------------------------- reading back
    def chunks_by_id(self, ids: Iterable[int]) -> dict[int, ChunkRecord]:
        rows = self._conn.execute(
            """
            SELECT c.id, r.path, f.path, f.relpath, c.start_line, c.end_line, c.heading, c.text
            FROM chunks c JOIN files f ON f.id = c.file_id JOIN roots r ON r.id = f.root_id
            WHERE c.id IN (SELECT value FROM json_each(?))
            """,
            (json.dumps([int(i) for i in ids]),),
        )
        return {row[0]: ChunkRecord(*row) for row in rows}

    def _count(self, table: str) -> int:
        return int(self._scalar(f"SELECT count(*) FROM {table}")) if self._has_table(table) else 0

    def stats(self) -> dict[str, object]:
        settings = self.settings()
        db_bytes = sum(
            os.path.getsize(candidate)
            for candidate in (self.path, Path(f"{self.path}-wal"))
            if os.path.exists(candidate)
        )
        return {
            "path": str(self.path),
            "roots": self._count("roots"),
            "files": self._count("files"),
            "chunks": self._count("chunks"),
            "vectors": self._count("chunk_vectors"),
            "db_bytes": db_bytes,
            "settings": asdict(settings) if settings else None,
            "schema_version": self.schema_version(),
        }

    def checkpoint(self) -> None:
        """Fold the WAL back into the database file, so it does not linger at its peak size."""
        self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()

    def integrity_check(self) -> str:
        """'ok', or what is wrong: SQLite's check, FTS5's checks, and the tables agreeing."""
        problems = [row[0] for row in self._conn.execute("PRAGMA integrity_check") if row[0] != "ok"]
        for table in ("chunks_fts", "chunks_cjk"):
            try:
                self._conn.execute(f"INSERT INTO {table}({table}, rank) VALUES('integrity-check', 0)")
            except apsw.Error as exc:
                problems.append(f"{table}: {exc}")
        chunks = self._count("chunks")
        for table in ("chunk_vectors", "chunks_fts"):
            if self._count(table) != chunks:
                problems.append(f"{table} has {self._count(table)} rows for {chunks} chunks")
        return "; ".join(problems) or "ok"


def _settings_differences(stored: IndexSettings, wanted: IndexSettings) -> list[str]:
    """Names of what would make old and new vectors or chunks incomparable."""
    differences = []
    if stored.model_hash and wanted.model_hash:
        if stored.model_hash != wanted.model_hash:
            same_label = stored.model_label == wanted.model_label
            differences.append(
                f"the model file ({Path(stored.model_file).name} vs {Path(wanted.model_file).name})"
                if same_label
                else "the model"
            )
    elif stored.model_label != wanted.model_label:
        differences.append("the model")
    for field, name in (
        ("dims", "dims"),
        ("chunk_tokens", "chunk size"),
        ("overlap", "overlap"),
        ("chunker_version", "chunking rules (a newer edge-embed)"),
    ):
        if getattr(stored, field) != getattr(wanted, field):
            differences.append(name)
    return differences
