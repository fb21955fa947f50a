"""``store.maintenance``: figures (``stats``), the file's health, its wasted space, compaction,
and copying a whole index into this one (a rebuild's swap).

Space the edit history wastes, and compaction: vector tables rebuilt, keyword indexes merged, VACUUM.

Two things grow with edits and never shrink by themselves: vec0 slots freed outside a
vector table's newest chunk of slots (sqlite-vec 0.1.x does not reuse them; a KNN still
scans them), and SQLite pages freed by deletes (the file keeps them until a VACUUM).
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import apsw

from edge_embed.store.meta import Meta
from edge_embed.store.part import Part, transaction
from edge_embed.store.schema import (
    KEYWORD_TABLES,
    VECTOR_TABLES,
    migration_name,
    pending_migrations,
    rebuild_vector_tables,
    user_version,
)
from edge_embed.store.vectors import Vectors

MB = 1_000_000


@dataclass(frozen=True)
class VectorSpace:
    """The slots of one vec0 table: how many are allocated, how many hold a live vector."""

    table: str
    vectors: int
    slots: int
    chunks: int  # sqlite-vec's chunks of slots (VEC_CHUNK_SIZE each here), each one blob per column
    chunk_bytes: int  # bytes of one chunk: vectors, rowids and validity bitmap

    @property
    def needed_chunks(self) -> int:
        """What a fresh table needs for the live vectors (it always keeps one)."""
        if not self.chunks:
            return 0
        return max(1, math.ceil(self.vectors / (self.slots // self.chunks)))

    @property
    def dead_bytes(self) -> int:
        return (self.chunks - self.needed_chunks) * self.chunk_bytes


@dataclass(frozen=True)
class SpaceUsage:
    """How much of the index file compaction would give back, and why."""

    database_bytes: int  # the main file's pages (the -wal file aside)
    free_bytes: int  # pages on SQLite's freelist: kept by the file until a VACUUM
    vector_tables: tuple[VectorSpace, ...]

    @property
    def vectors(self) -> int:
        return sum(space.vectors for space in self.vector_tables)

    @property
    def vector_slots(self) -> int:
        return sum(space.slots for space in self.vector_tables)

    @property
    def vector_chunks(self) -> int:
        return sum(space.chunks for space in self.vector_tables)

    @property
    def needed_vector_chunks(self) -> int:
        return sum(space.needed_chunks for space in self.vector_tables)

    @property
    def dead_vector_fraction(self) -> float:
        """Share of the vector chunks a KNN scans that a compacted index would not have.

        Whole chunks, not slots: the unfilled tail of the newest chunk is not waste (the
        next inserts fill it), and a fresh table of a few vectors still has one chunk.
        """
        return 1 - self.needed_vector_chunks / self.vector_chunks if self.vector_chunks else 0.0

    @property
    def reclaimable_bytes(self) -> int:
        return self.free_bytes + sum(space.dead_bytes for space in self.vector_tables)

    @property
    def reclaimable_fraction(self) -> float:
        return self.reclaimable_bytes / self.database_bytes if self.database_bytes else 0.0

    def to_dict(self) -> dict[str, object]:
        return {
            **asdict(self),
            "vectors": self.vectors,
            "vector_slots": self.vector_slots,
            "vector_chunks": self.vector_chunks,
            "needed_vector_chunks": self.needed_vector_chunks,
            "dead_vector_fraction": round(self.dead_vector_fraction, 4),
            "reclaimable_bytes": self.reclaimable_bytes,
            "reclaimable_fraction": round(self.reclaimable_fraction, 4),
        }


@dataclass(frozen=True)
class CompactPolicy:
    """When `edge-embed index` compacts by itself at the end of a run.

    Both must hold: a fraction, so a big index is not rewritten for a few dead chunks,
    and a floor in bytes, so a small index (fast to scan anyway) is not rewritten over
    and over. Measured in docs/benchmarks.md (scripts/bench_compact.py).
    """

    min_fraction: float = 0.30
    min_bytes: int = 16 * MB

    def due(self, usage: SpaceUsage) -> bool:
        return usage.reclaimable_fraction >= self.min_fraction and usage.reclaimable_bytes >= self.min_bytes


@dataclass(frozen=True)
class CompactResult:
    before: SpaceUsage
    after: SpaceUsage
    elapsed_s: float

    @property
    def freed_bytes(self) -> int:
        return self.before.database_bytes - self.after.database_bytes

    def to_dict(self) -> dict[str, object]:
        return {
            "before": self.before.to_dict(),
            "after": self.after.to_dict(),
            "freed_bytes": self.freed_bytes,
            "elapsed_s": self.elapsed_s,
        }


class Maintenance(Part):
    """Measuring the index and its wasted space, giving the space back, checking and replacing it."""

    def __init__(self, conn: apsw.Connection, path: Path, meta: Meta, vectors: Vectors) -> None:
        super().__init__(conn, path)
        self._meta = meta  # the dims a compaction rebuilds the vector tables with
        self._vectors = vectors  # which path a vector query takes, for stats

    def stats(self) -> dict[str, object]:
        """What `status` shows of the file: counts, size, settings, schema, the vector path."""
        from edge_embed.store.coarse import code_bytes  # numpy: not on the server-client path

        settings = self._meta.settings()
        db_bytes = sum(
            os.path.getsize(candidate)
            for candidate in (self.path, Path(f"{self.path}-wal"))
            if os.path.exists(candidate)
        )
        chunks = self._count("chunks")
        version = user_version(self._conn)
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
            "schema_version": version,
            "pending_migrations": [migration_name(number) for number in pending_migrations(version)],
            "vector_path": self._vectors.vector_path(),
        }

    def space_usage(self) -> SpaceUsage:
        page_size = int(self._scalar("PRAGMA page_size"))
        return SpaceUsage(
            database_bytes=int(self._scalar("PRAGMA page_count")) * page_size,
            free_bytes=int(self._scalar("PRAGMA freelist_count")) * page_size,
            vector_tables=tuple(self._vector_space(name) for name in VECTOR_TABLES if self._has_table(name)),
        )

    def _vector_space(self, table: str) -> VectorSpace:
        """Read from sqlite-vec's shadow tables: ``_chunks`` (slots), ``_rowids`` (live rows)."""
        chunks, slots, bookkeeping = self._conn.execute(
            f'SELECT count(*), coalesce(sum(size), 0), coalesce(sum(length(validity) + length(rowids)), 0) FROM "{table}_chunks"'
        ).fetchall()[0]
        vector_bytes = sum(
            int(self._scalar(f'SELECT coalesce(sum(length(vectors)), 0) FROM "{name}"'))
            for (name,) in self._conn.execute(
                "SELECT name FROM sqlite_schema WHERE type = 'table' AND name LIKE ? ESCAPE '\\'",
                (table.replace("_", "\\_") + "\\_vector\\_chunks%",),
            ).fetchall()
        )
        return VectorSpace(
            table=table,
            vectors=self._count(f"{table}_rowids"),
            slots=int(slots),
            chunks=int(chunks),
            chunk_bytes=(int(bookkeeping) + vector_bytes) // chunks if chunks else 0,
        )

    def compact(self) -> CompactResult:
        """Give the wasted space back: vector tables rebuilt, keyword indexes merged, VACUUM.

        Crash-safe: the rebuild is one transaction (a kill leaves the old tables or the new
        ones), and VACUUM is atomic by itself. Readers keep answering from their snapshot
        throughout (WAL). The caller holds the writer lock (``writer_lock()``). Needs free
        disk space of about twice the index while it runs (the copy, then VACUUM's).
        """
        started = time.perf_counter()
        before = self.space_usage()
        settings = self._meta.settings()
        with transaction(self._conn):
            if settings is not None:
                rebuild_vector_tables(self._conn, settings.dims)
            for table in KEYWORD_TABLES:  # merging the segments drops deleted rows' entries
                self._conn.execute(f"INSERT INTO {table}({table}) VALUES('optimize')")
        self._conn.execute("VACUUM")
        self.checkpoint()
        return CompactResult(before, self.space_usage(), round(time.perf_counter() - started, 3))

    def page_size(self) -> int:
        return int(self._scalar("PRAGMA page_size"))

    def replace_with(self, source: Maintenance) -> None:
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

