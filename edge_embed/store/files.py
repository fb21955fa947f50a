"""``store.files``: what was indexed where: roots, their files, and the files' chunks.

Every write keeps a file's chunks, vectors, codes and keyword rows in one transaction
(``rows``), so a crash or Ctrl-C leaves the old version of a file or the new one.
"""

from __future__ import annotations

import json
import os
import time
from collections import defaultdict, deque
from collections.abc import Iterable, Sequence
from pathlib import Path

import apsw

from edge_embed.files import gitignore_spec
from edge_embed.store.filters import absolute, as_stored, under_prefix
from edge_embed.store.keywords import keyword_texts
from edge_embed.store.meta import Meta, stamp_write
from edge_embed.store.part import Part, transaction
from edge_embed.store.records import ChunkChanges, ChunkRecord, FileRecord, FileState, NewChunk, RootInfo, StoredChunk, vector_blob
from edge_embed.store.rows import append_codes, delete_chunk_ids, delete_file_rows, insert_chunk, update_chunk
from edge_embed.store.schema import column_exists


class Files(Part):
    """Roots, files and chunks: the rows the indexer compares, writes and forgets."""

    def __init__(self, conn: apsw.Connection, path: Path, meta: Meta) -> None:
        super().__init__(conn, path)
        self._meta = meta  # the dims a written vector must have

    # ---------------------------------------------------------------- roots
    def add_root(self, path: str | os.PathLike[str]) -> int:
        root = absolute(path)
        with transaction(self._conn):
            self._conn.execute(
                "INSERT INTO roots(path, added_at) VALUES(?, ?) ON CONFLICT(path) DO NOTHING", (root, time.time())
            )
            return int(self._scalar("SELECT id FROM roots WHERE path = ?", (root,)))

    def root_paths(self) -> list[str]:
        """The indexed folders alone: cheap, unlike roots(), which counts every chunk."""
        return [row[0] for row in self._conn.execute("SELECT path FROM roots ORDER BY path")]

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
        with transaction(self._conn):
            self._conn.execute("UPDATE roots SET last_indexed_at = ? WHERE id = ?", (time.time(), root_id))

    def remove_root(self, path: str | os.PathLike[str]) -> bool:
        """Forget a root with all its files, chunks, vectors and keyword rows."""
        with transaction(self._conn):
            root_id = self._scalar("SELECT id FROM roots WHERE path = ?", (absolute(path),))
            if root_id is None:
                return False
            file_ids = [row[0] for row in self._conn.execute("SELECT id FROM files WHERE root_id = ?", (root_id,))]
            for file_id in file_ids:
                delete_file_rows(self._conn, file_id)
            self._conn.execute("DELETE FROM roots WHERE id = ?", (root_id,))
            stamp_write(self._conn)
        return True

    # ---------------------------------------------------------------- files
    def file_states(self, root_id: int) -> dict[str, FileState]:
        rows = self._conn.execute(
            "SELECT relpath, id, size, mtime_ns, content_hash FROM files WHERE root_id = ?", (root_id,)
        )
        return {relpath: FileState(*state) for relpath, *state in rows}

    def has_file(self, path: str) -> bool:
        """Whether ``path`` (as stored: the root resolved, the rest as walked) is an indexed file."""
        return self._scalar("SELECT 1 FROM files WHERE path = ? LIMIT 1", (path,)) is not None

    def matching_files(self, path_prefixes: Sequence[str], globs: Sequence[str]) -> list[int] | None:
        """Files passing the filters (prefixes OR'ed, AND'ed with the globs); None: no filter.

        Globs are gitignore patterns matched against the relpath, like ``--include`` when
        indexing: one spec for all of them, so a later ``!pattern`` takes back a match.
        """
        if not path_prefixes and not globs:
            return None
        roots = self.root_paths()
        prefixes = [as_stored(prefix, roots) for prefix in path_prefixes]
        spec = gitignore_spec(globs)
        return [
            file_id
            for file_id, relpath, path in self._conn.execute("SELECT id, relpath, path FROM files")
            if (not prefixes or any(under_prefix(path, prefix) for prefix in prefixes))
            and (spec is None or spec.match_file(relpath))
        ]

    def touch_file(self, file_id: int, size: int, mtime_ns: int) -> None:
        """Same content, new stat (e.g. a `touch` or a checkout): no re-embedding."""
        with transaction(self._conn):
            self._conn.execute("UPDATE files SET size = ?, mtime_ns = ? WHERE id = ?", (size, mtime_ns, file_id))

    def write_file(self, record: FileRecord, chunks: Sequence[NewChunk]) -> ChunkChanges:
        """Bring a file's row to ``record`` and its rows of chunks to ``chunks``, in one transaction.

        A crash or Ctrl-C leaves either the old version or the new one, never a mix.
        Rows of texts the file already had stay in place (see ``_replace_chunks``).
        """
        dims = self._meta.required_settings().dims
        blobs = [vector_blob(chunk.vector, dims) for chunk in chunks]  # validate before writing
        with transaction(self._conn):
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
                    (
                        record.root_id, record.relpath, record.path, record.size, record.mtime_ns,
                        record.content_hash, time.time(),
                    ),
                )
            )
            stamp_write(self._conn)
            return self._replace_chunks(file_id, record.relpath, chunks, blobs)

    def _replace_chunks(self, file_id: int, relpath: str, chunks: Sequence[NewChunk], blobs: Sequence[bytes]) -> ChunkChanges:
        """Insert only the new texts, delete the vanished ones, keep the rest in place.

        WHY: sqlite-vec 0.1.x never reuses a freed vector slot outside its newest chunk of
        slots (upstream #184, #220; VEC_CHUNK_SIZE slots per chunk here), so deleting and re-inserting every chunk of an
        edited file made the index file and every KNN scan grow with the edit history.
        A kept row keeps its chunk id and vector slot; only its position (seq, lines) is
        updated, and its keyword rows only if what they index changed. Texts are matched
        by embed-text hash with multiplicity: a paragraph that appears twice keeps two rows.
        """
        stored: dict[str, deque[StoredChunk]] = defaultdict(deque)
        for text_hash, *row in self._conn.execute(
            "SELECT text_hash, id, seq, start_line, end_line, heading, text, page_start, page_end FROM chunks"
            " WHERE file_id = ? ORDER BY seq",
            (file_id,),
        ):
            stored[text_hash].append(StoredChunk(*row))
        stored_words = _keyword_words([row for rows in stored.values() for row in rows])
        words = _keyword_words(chunks)
        kept: list[tuple[StoredChunk, NewChunk]] = []
        new: list[tuple[NewChunk, bytes]] = []
        for chunk, blob in zip(chunks, blobs):
            same = stored.get(chunk.text_hash)
            if same:
                kept.append((same.popleft(), chunk))
            else:
                new.append((chunk, blob))
        vanished = [row.id for rows in stored.values() for row in rows]
        delete_chunk_ids(self._conn, vanished)  # first: vec0 reuses slots freed in its newest chunk
        for row, chunk in kept:
            update_chunk(self._conn, row, relpath, chunk, words[chunk.seq], stored_words[row.seq])
        inserted = [insert_chunk(self._conn, file_id, relpath, chunk, blob, words[chunk.seq]) for chunk, blob in new]
        append_codes(self._conn, inserted, [blob for _, blob in new])
        return ChunkChanges(inserted=len(new), kept=len(kept), deleted=len(vanished))

    def delete_file(self, file_id: int) -> None:
        with transaction(self._conn):
            delete_file_rows(self._conn, file_id)
            stamp_write(self._conn)

    # ---------------------------------------------------------------- chunks
    def chunk_count(self) -> int:
        return self._count("chunks")

    def chunk_files(self, ids: Iterable[int]) -> dict[int, int]:
        """chunk id -> file id: enough for per-file grouping, without reading chunk texts."""
        rows = self._conn.execute(
            "SELECT id, file_id FROM chunks WHERE id IN (SELECT value FROM json_each(?))",
            (json.dumps([int(i) for i in ids]),),
        )
        return {int(chunk_id): int(file_id) for chunk_id, file_id in rows}

    def chunks_by_id(self, ids: Iterable[int]) -> dict[int, ChunkRecord]:
        """The chunks of ``ids`` still stored; no pages in an index from before their columns
        (migration 3), which its next writer adds."""
        pages = "c.page_start, c.page_end" if column_exists(self._conn, "chunks", "page_start") else "NULL, NULL"
        rows = self._conn.execute(
            f"""
            SELECT c.id, r.path, f.path, f.relpath, c.start_line, c.end_line, c.heading, c.text, {pages}
            FROM chunks c JOIN files f ON f.id = c.file_id JOIN roots r ON r.id = f.root_id
            WHERE c.id IN (SELECT value FROM json_each(?))
            """,
            (json.dumps([int(i) for i in ids]),),
        )
        return {row[0]: ChunkRecord(*row) for row in rows}


def _keyword_words(chunks: Sequence[NewChunk | StoredChunk]) -> dict[int, str]:
    """What each of a file's chunks holds in its keyword rows, by its ``seq`` (its place in
    the file): its text with its neighbours' (``keywords.keyword_texts``)."""
    ordered = sorted(chunks, key=lambda chunk: chunk.seq)
    return dict(zip((chunk.seq for chunk in ordered), keyword_texts([(chunk.heading, chunk.text) for chunk in ordered])))
