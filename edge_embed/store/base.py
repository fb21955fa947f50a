"""The core of an open index: opening and identity, transactions, settings, roots, maintenance."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, replace
from pathlib import Path
from typing import TypeVar

import apsw

from edge_embed.errors import EdgeEmbedError, IndexMismatch
from edge_embed.store.filters import absolute
from edge_embed.store.lock import DEFAULT_HOLDER, writer_lock
from edge_embed.store.records import FileState, IndexSettings, RootInfo, settings_differences
from edge_embed.store.schema import (
    APPLICATION_ID,
    KEYWORD_TABLES,
    MIGRATIONS,
    SCHEMA_VERSION,
    MigrationProgress,
    connect,
    create_vector_table,
    migration_name,
    pending_migrations,
    table_exists,
)
from edge_embed.store.sqlite_errors import translated_errors

_Self = TypeVar("_Self", bound="StoreBase")


def _writable_here(path: Path) -> bool:
    """Whether this process may write the index and create its -wal/-shm files beside it
    (``os.access`` also sees read-only mounts and immutable files, even for root)."""
    return os.access(path, os.W_OK) and os.access(path.parent, os.W_OK | os.X_OK)


class StoreBase:
    """One open index file: opening, transactions, settings, roots, maintenance.

    Writes and retrieval live in their own modules as subclasses; ``Store`` joins them.
    Not thread-safe: one Store per thread or process.
    """

    def __init__(self, conn: apsw.Connection, path: Path, read_only: bool = False) -> None:
        self._conn = conn
        self.path = path
        self.read_only = read_only

    # ---------------------------------------------------------------- open / close
    @classmethod
    def open(
        cls: type[_Self],
        path: str | os.PathLike[str],
        *,
        create: bool = True,
        page_size: int | None = None,
        reading: bool = False,
    ) -> _Self:
        """Open (or create) an index; refuse files that are not edge-embed indexes.

        ``page_size`` applies to a new file only (a rebuild's, which must match the index
        it will be copied into). ``reading``: the caller only reads (query, status, serve,
        mcp), so an index that cannot be written here (a read-only folder, file or mount)
        is opened read-only instead of failing; writing through it is refused, by name.

        Opening never migrates an existing index: a migration can rewrite every vector, and
        a reader doing it inside a write transaction made every other command wait, then
        fail with IndexBusy. Reads answer from the schema as it is (``pending_migrations``);
        writers migrate when they take the writer lock (``writer_lock``).
        """
        path = Path(path).expanduser().absolute()
        if not create and not path.is_file():
            raise EdgeEmbedError(f"no index at {path} yet: build one with `edge-embed index FOLDER`")
        if reading and not _writable_here(path):
            return cls._open_read_only(path)
        if create:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise EdgeEmbedError(f"cannot create the folder for the index {path}: {exc.strerror}") from None
        conn = connect(path, create)
        try:
            cls._check_identity(conn, path)
            store = cls(conn, path)
            store._prepare(page_size)
        except BaseException:
            conn.close()
            raise
        return store

    @classmethod
    def _open_read_only(cls: type[_Self], path: Path) -> _Self:
        """``mode=ro``; where even the WAL's shared-memory file cannot be made beside it,
        ``immutable``: nobody can be writing an index in a folder nobody can write to."""
        conn = connect(path, create=False, read_only=True)
        try:
            cls._check_identity(conn, path)
            store = cls(conn, path, read_only=True)
            store._check_readable()
        except BaseException:
            conn.close()
            raise
        return store

    def _prepare(self, page_size: int | None = None) -> None:
        """WAL so readers never wait for the indexer; a new file gets its schema at once.

        The page size must be set first: a database in WAL mode cannot change it. Only a
        new (or empty) file is migrated here: there is nothing in it to rebuild, so it is
        quick, and nobody can be reading it yet.
        """
        try:
            if page_size is not None:
                self._conn.execute(f"PRAGMA page_size = {int(page_size)}")
            self._conn.execute("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;")
            if self.schema_version() == 0:
                self._migrate()
        except (apsw.ReadOnlyError, apsw.CantOpenError):
            raise EdgeEmbedError(
                f"cannot write the index {self.path} (or its -wal/-shm files beside it); check the permissions"
            ) from None

    @staticmethod
    def _check_identity(conn: apsw.Connection, path: Path) -> None:
        """Before touching anything: is this an edge-embed index, an empty file, or foreign?

        An empty file (0 bytes, or an SQLite header without a single object) is what a
        process killed in the first instants of a new index leaves behind: it is treated as
        a new index and initialised, never refused (there is nothing in it to lose).
        """
        try:
            app_id = conn.execute("PRAGMA application_id").fetchall()[0][0]
            version = conn.execute("PRAGMA user_version").fetchall()[0][0]
            objects = conn.execute("SELECT count(*) FROM sqlite_schema").fetchall()[0][0]
        except apsw.NotADBError:  # a damaged index (CorruptError) is told apart by translating_errors
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

    def _check_readable(self) -> None:
        """Every schema from migration 1 on answers reads; an empty file that cannot be
        written here (so not given its schema) holds no index yet."""
        if self.schema_version() == 0:
            raise EdgeEmbedError(
                f"{self.path} holds no index yet (its first run stopped at once): build it with `edge-embed index FOLDER`"
            )

    def _migrate(self, on_migration: MigrationProgress | None = None) -> None:
        """Run the migrations this file has not seen, in one transaction (all or none).

        The version is read again inside the write transaction: another process (two
        commands opening a new file at the same instant) may have migrated it meanwhile.
        ``on_migration`` hears of each step before it runs.
        """
        if self.schema_version() >= SCHEMA_VERSION:
            return
        with self.transaction():
            pending = self.pending_migrations()
            for step, number in enumerate(pending, start=1):
                if on_migration is not None:
                    on_migration(step, len(pending), migration_name(number))
                MIGRATIONS[number - 1](self._conn)
                self._conn.execute(f"PRAGMA user_version = {number}")

    def schema_version(self) -> int:
        return int(self._scalar("PRAGMA user_version"))

    def pending_migrations(self) -> list[int]:
        """The migrations (numbers, 1-based) the next writer will run; reads work without them."""
        return pending_migrations(self.schema_version())

    def upgrade_note(self) -> str | None:
        """What to tell a reader of an index an older edge-embed wrote; None when it is current."""
        pending = self.pending_migrations()
        if not pending:
            return None
        roots = self.root_paths()
        command = f"edge-embed index {roots[0]}" if len(roots) == 1 else "edge-embed index FOLDER (any of its folders)"
        return (
            f"{self.path} was written by an older edge-embed: searches answer, without what its "
            f"{len(pending)} pending upgrade(s) add ({', '.join(map(migration_name, pending))}); "
            f"run `{command}` once to apply them (no re-embedding)"
        )

    def close(self) -> None:
        self._conn.close()

    def __enter__(self: _Self) -> _Self:
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
        with translated_errors(self.path):  # a failing COMMIT too
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
        return table_exists(self._conn, name)

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
            create_vector_table(self._conn, settings.dims)

    def check_settings(self, wanted: IndexSettings) -> None:
        """Raise IndexMismatch naming what differs from how this index was built."""
        stored = self.settings()
        if stored is None:
            return
        differences = settings_differences(stored, wanted)
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

    def set_model_file(self, label: str, model_file: str, model_size: int) -> None:
        """Where the index's model now lives (the same model, by header hash, moved or renamed)."""
        with self.transaction():
            stored = self._require_settings()
            self._save_settings(replace(stored, model_label=label, model_file=model_file, model_size=model_size))

    def _require_settings(self) -> IndexSettings:
        stored = self.settings()
        if stored is None:
            raise EdgeEmbedError(f"{self.path} has no model yet: build it with `edge-embed index FOLDER` first")
        return stored

    def _dims(self) -> int:
        return self._require_settings().dims

    # ---------------------------------------------------------------- roots
    def add_root(self, path: str | os.PathLike[str]) -> int:
        root = absolute(path)
        with self.transaction():
            self._conn.execute(
                "INSERT INTO roots(path, added_at) VALUES(?, ?) ON CONFLICT(path) DO NOTHING", (root, time.time())
            )
            return int(self._scalar("SELECT id FROM roots WHERE path = ?", (root,)))

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

    def mark_indexed(self, root_id: int) -> None:
        with self.transaction():
            self._conn.execute("UPDATE roots SET last_indexed_at = ? WHERE id = ?", (time.time(), root_id))

    # ---------------------------------------------------------------- files
    def file_states(self, root_id: int) -> dict[str, FileState]:
        rows = self._conn.execute(
            "SELECT relpath, id, size, mtime_ns, content_hash FROM files WHERE root_id = ?", (root_id,)
        )
        return {relpath: FileState(*state) for relpath, *state in rows}

    @contextmanager
    def writer_lock(self, holder: str = DEFAULT_HOLDER, on_migration: MigrationProgress | None = None) -> Iterator[None]:
        """Fail fast when another command (``holder`` names this one) is writing this index;
        then bring its schema up to date, so every write sees the current one.

        Migrating here, not on open, means one process at a time migrates, and no reader
        ever does: a query keeps answering from the old schema meanwhile (WAL).
        ``on_migration`` hears of each migration before it runs.
        """
        if self.read_only:
            raise EdgeEmbedError(
                f"changing the index {self.path} needs write access to it and its folder, which this "
                "user does not have here (a read-only folder, file or disk); searching it works"
            )
        with writer_lock(self.path, holder):
            self._migrate(on_migration)
            yield

    def last_write_at(self) -> float | None:
        """When a file was last written or forgotten (epoch seconds); None for an empty index.

        Indexes written before the stamp existed answer with their newest file.
        """
        stamp = self._scalar("SELECT value FROM meta WHERE key = 'last_write_at'")
        if stamp is not None:
            return float(stamp)
        newest = self._scalar("SELECT max(indexed_at) FROM files")
        return float(newest) if newest is not None else None

    def _stamp_write(self) -> None:
        """Record now as the last write, inside the caller's transaction (``last_write_at``)."""
        self._conn.execute(
            "INSERT INTO meta(key, value) VALUES('last_write_at', ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (repr(time.time()),),
        )

    def _count(self, table: str) -> int:
        return int(self._scalar(f"SELECT count(*) FROM {table}")) if self._has_table(table) else 0

    def stats(self) -> dict[str, object]:
        from edge_embed.store.coarse import code_bytes  # numpy: not on the server-client path

        settings = self.settings()
        db_bytes = sum(
            os.path.getsize(candidate)
            for candidate in (self.path, Path(f"{self.path}-wal"))
            if os.path.exists(candidate)
        )
        chunks = self._count("chunks")
        return {
            "path": str(self.path),
            "roots": self._count("roots"),
            "files": self._count("files"),
            "chunks": chunks,
            "vectors": self._count("chunk_vectors"),
            "db_bytes": db_bytes,
            # what one chunk costs on disk, and what of it a vector query's first stage reads
            "bytes_per_chunk": round(db_bytes / chunks) if chunks else None,
            "coarse_bytes_per_chunk": code_bytes(settings.dims) + 8 if settings else None,
            "settings": asdict(settings) if settings else None,
            "schema_version": self.schema_version(),
            "pending_migrations": [migration_name(number) for number in self.pending_migrations()],
        }

    def page_size(self) -> int:
        return int(self._scalar("PRAGMA page_size"))

    def replace_with(self, source: StoreBase) -> None:
        """Make this index a copy of ``source``, page for page, in ONE transaction.

        SQLite's backup API writes every page of ``source`` into this database under its
        own locks and WAL: a reader sees the old index or the new one (never a mix, never
        a file pulled from under it), a crash during the copy rolls back to the old one,
        and the schema change makes open connections re-read the schema. The vec0 and
        FTS5 shadow tables are ordinary tables, so they come along. A WAL database can
        only take pages of its own size, hence the check.
        """
        if source.page_size() != self.page_size():
            raise ValueError(f"page size {source.page_size()} of {source.path} differs from {self.page_size()}")
        source.checkpoint()
        with self._conn.backup("main", source._conn, "main") as backup:
            backup.step(-1)  # all pages in one step: one destination transaction
        self.checkpoint()

    def checkpoint(self) -> None:
        """Fold the WAL back into the database file, so it does not linger at its peak size."""
        self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()

    def integrity_check(self) -> str:
        """'ok', or what is wrong: SQLite's check, FTS5's checks, and the tables agreeing."""
        from edge_embed.store.coarse import coarse_count  # numpy: not on the server-client path

        problems = [row[0] for row in self._conn.execute("PRAGMA integrity_check") if row[0] != "ok"]
        for table in KEYWORD_TABLES:
            try:
                self._conn.execute(f"INSERT INTO {table}({table}, rank) VALUES('integrity-check', 0)")
            except apsw.Error as exc:
                problems.append(f"{table}: {exc}")
        chunks = self._count("chunks")
        for table in ("chunk_vectors", "chunks_fts"):
            if self._count(table) != chunks:
                problems.append(f"{table} has {self._count(table)} rows for {chunks} chunks")
        if self._has_table("chunk_bits") and coarse_count(self._conn) != chunks:
            problems.append(f"chunk_bits has {coarse_count(self._conn)} codes for {chunks} chunks")
        return "; ".join(problems) or "ok"

