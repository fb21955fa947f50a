"""``Store``: one open index file, the ONE connection to it, and the parts that use it.

Opening, identity, the schema (readers never migrate, writers migrate under the writer
lock), transactions; everything else is a part: ``meta`` (settings, bookkeeping),
``files`` (roots, files, chunks), ``vectors``, ``keywords`` and ``maintenance`` (stats,
space, compaction, integrity, the rebuild's copy).

It lives apart from the package's ``__init__`` so that importing the records (``ChunkRecord``,
``MAX_KNN_K``...) does not load apsw and sqlite-vec: `edge-embed query` answered by a running
server renders records and never opens SQLite.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import apsw

from edge_embed.errors import EdgeEmbedError, Phrase
from edge_embed.store.files import Files
from edge_embed.store.keyword_search import Keywords
from edge_embed.store.lock import DEFAULT_HOLDER, writer_lock
from edge_embed.store.maintenance import Maintenance
from edge_embed.store.meta import Meta
from edge_embed.store.part import transaction
from edge_embed.store.schema import (
    APPLICATION_ID,
    MIGRATIONS,
    SCHEMA_VERSION,
    MigrationProgress,
    connect,
    migration_name,
    pending_migrations,
    user_version,
)
from edge_embed.store.sqlite_errors import TranslatesErrors
from edge_embed.store.vectors import Vectors


def _writable_here(path: Path) -> bool:
    """Whether this process may write the index and create its -wal/-shm files beside it
    (``os.access`` also sees read-only mounts and immutable files, even for root)."""
    return os.access(path, os.W_OK) and os.access(path.parent, os.W_OK | os.X_OK)


class Store(TranslatesErrors):
    """One open index file. Not thread-safe: one Store per thread or process.

    Its parts share its connection and are closed with it; every public method of the
    Store and of its parts turns apsw errors into one-line ``EdgeEmbedError``s
    (``TranslatesErrors``, the store's one error boundary).
    """

    def __init__(self, conn: apsw.Connection, path: Path, read_only: bool = False) -> None:
        self._conn = conn
        self.path = path
        self.read_only = read_only
        self.meta = Meta(conn, path)
        self.files = Files(conn, path, self.meta)
        self.vectors = Vectors(conn, path, self.meta, self.files)
        self.keywords = Keywords(conn, path, self.files)
        self.maintenance = Maintenance(conn, path, self.meta, self.vectors)

    # ---------------------------------------------------------------- open / close
    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        *,
        create: bool = True,
        page_size: int | None = None,
        reading: bool = False,
    ) -> Store:
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
            raise EdgeEmbedError(f"no index at {path} yet", kind="not_found", hint="build one first: {index}")
        if reading and not _writable_here(path):
            return cls._open_read_only(path)
        if create:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise EdgeEmbedError(f"cannot create the folder for the index {path}: {exc.strerror}") from None
        conn = connect(path, create)
        try:
            _check_identity(conn, path)
            store = cls(conn, path)
            store._prepare(page_size)
        except BaseException:
            conn.close()
            raise
        return store

    @classmethod
    def _open_read_only(cls, path: Path) -> Store:
        """``mode=ro``; where even the WAL's shared-memory file cannot be made beside it,
        ``immutable``: nobody can be writing an index in a folder nobody can write to."""
        conn = connect(path, create=False, read_only=True)
        try:
            _check_identity(conn, path)
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

    def _check_readable(self) -> None:
        """Every schema from migration 1 on answers reads; an empty file that cannot be
        written here (so not given its schema) holds no index yet."""
        if self.schema_version() == 0:
            raise EdgeEmbedError(
                f"{self.path} holds no index yet (its first run stopped at once)", kind="not_found",
                hint="build it first: {index}",
            )

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ---------------------------------------------------------------- schema
    def schema_version(self) -> int:
        return user_version(self._conn)

    def pending_migrations(self) -> list[int]:
        """The migrations (numbers, 1-based) the next writer will run; reads work without them."""
        return pending_migrations(self.schema_version())

    def upgrade_note(self) -> Phrase | None:
        """What to tell a reader of an index an older edge-embed wrote; None when it is current."""
        pending = self.pending_migrations()
        if not pending:
            return None
        roots = self.files.root_paths()
        return Phrase(
            "{path} was written by an older edge-embed: searches answer, without what its {count} pending "
            "upgrade(s) add ({names}); {index_again} once to apply them (no re-embedding)",
            path=self.path, count=len(pending), names=", ".join(map(migration_name, pending)),
            root=roots[0] if len(roots) == 1 else "FOLDER (any of its folders)",
        )

    def _migrate(self, on_migration: MigrationProgress | None = None) -> None:
        """Run the migrations this file has not seen, in one transaction (all or none).

        The version is read again inside the write transaction: another process (two
        commands opening a new file at the same instant) may have migrated it meanwhile.
        ``on_migration`` hears of each step before it runs.
        """
        if self.schema_version() >= SCHEMA_VERSION:
            return
        with transaction(self._conn):
            pending = self.pending_migrations()
            for step, number in enumerate(pending, start=1):
                if on_migration is not None:
                    on_migration(step, len(pending), migration_name(number))
                MIGRATIONS[number - 1](self._conn)
                self._conn.execute(f"PRAGMA user_version = {number}")

    # ---------------------------------------------------------------- writing
    @contextmanager
    def transaction(self) -> Iterator[None]:
        """A write transaction; nested ones become savepoints of the outer one.

        Callers may wrap several ``files.write_file`` calls in one to commit less often.
        """
        with transaction(self._conn):
            yield

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


def _check_identity(conn: apsw.Connection, path: Path) -> None:
    """Before touching anything: is this an edge-embed index, an empty file, or foreign?

    An empty file (0 bytes, or an SQLite header without a single object) is what a
    process killed in the first instants of a new index leaves behind: it is treated as
    a new index and initialised, never refused (there is nothing in it to lose).
    """
    try:
        app_id = conn.execute("PRAGMA application_id").fetchall()[0][0]
        version = user_version(conn)
        objects = conn.execute("SELECT count(*) FROM sqlite_schema").fetchall()[0][0]
    except apsw.NotADBError:  # a damaged index (CorruptError) is told apart by the error boundary
        raise EdgeEmbedError(f"{path} is not an edge-embed index (not an SQLite database)", param="db", hint="give another {db}") from None
    if app_id == APPLICATION_ID:
        if version > SCHEMA_VERSION:
            raise EdgeEmbedError(
                f"{path} was written by a newer edge-embed (schema {version}, this one knows "
                f"{SCHEMA_VERSION}); upgrade edge-embed"
            )
        return
    if objects:
        raise EdgeEmbedError(f"{path} is an SQLite database but not an edge-embed index", param="db", hint="give another {db}")
