"""Writing an index: files with their chunks, vectors and keyword rows, in one transaction each."""

from __future__ import annotations

import json
import os
import time
from collections import defaultdict, deque
from collections.abc import Iterable, Sequence

from typing import TYPE_CHECKING

from edge_embed.store.base import StoreBase
from edge_embed.store.filters import absolute
from edge_embed.store.records import ChunkChanges, NewChunk, StoredChunk, vector_blob
from edge_embed.store.schema import KEYWORD_TABLES, write_cjk_rows

if TYPE_CHECKING:
    import numpy as np


class StoreWrites(StoreBase):
    """Every write keeps chunks, vectors and the FTS tables in one transaction."""

    def touch_file(self, file_id: int, size: int, mtime_ns: int) -> None:
        """Same content, new stat (e.g. a `touch` or a checkout): no re-embedding."""
        with self.transaction():
            self._conn.execute("UPDATE files SET size = ?, mtime_ns = ? WHERE id = ?", (size, mtime_ns, file_id))

    def count_timeout(self, content_hash: str) -> int:
        """One more extraction timeout of these exact bytes; returns how many so far.

        Kept in ``meta`` (no file row: a file that timed out keeps its old chunks and stat,
        so the next run tries again), until ``forget_timeouts``.
        """
        key = f"extraction-timeouts:{content_hash}"
        with self.transaction():
            return int(self._scalar(
                "INSERT INTO meta(key, value) VALUES(?, '1') "
                "ON CONFLICT(key) DO UPDATE SET value = CAST(value AS INTEGER) + 1 RETURNING value",
                (key,),
            ))

    def forget_timeouts(self, content_hash: str) -> None:
        with self.transaction():
            self._conn.execute("DELETE FROM meta WHERE key = ?", (f"extraction-timeouts:{content_hash}",))

    def remove_root(self, path: str | os.PathLike[str]) -> bool:
        """Forget a root with all its files, chunks, vectors and keyword rows."""
        with self.transaction():
            root_id = self._scalar("SELECT id FROM roots WHERE path = ?", (absolute(path),))
            if root_id is None:
                return False
            file_ids = [row[0] for row in self._conn.execute("SELECT id FROM files WHERE root_id = ?", (root_id,))]
            for file_id in file_ids:
                self._delete_file_rows(file_id)
            self._conn.execute("DELETE FROM roots WHERE id = ?", (root_id,))
            self._stamp_write()
        return True


    def write_file(
        self,
        root_id: int,
        relpath: str,
        path: str,
        size: int,
        mtime_ns: int,
        content_hash: str,
        chunks: Sequence[NewChunk],
    ) -> ChunkChanges:
        """Bring a file's rows to these chunks, in one transaction.

        A crash or Ctrl-C leaves either the old version or the new one, never a mix.
        Rows of texts the file already had stay in place (see ``_replace_chunks``).
        """
        dims = self._dims()
        blobs = [vector_blob(chunk.vector, dims) for chunk in chunks]  # validate before writing
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
            self._stamp_write()
            return self._replace_chunks(file_id, relpath, chunks, blobs)

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
        kept: list[tuple[StoredChunk, NewChunk]] = []
        new: list[tuple[NewChunk, bytes]] = []
        for chunk, blob in zip(chunks, blobs):
            same = stored.get(chunk.text_hash)
            if same:
                kept.append((same.popleft(), chunk))
            else:
                new.append((chunk, blob))
        vanished = [row.id for rows in stored.values() for row in rows]
        self._delete_chunk_ids(vanished)  # first: vec0 reuses slots freed in its newest chunk
        for row, chunk in kept:
            self._update_chunk(row, relpath, chunk)
        inserted = [self._insert_chunk(file_id, relpath, chunk, blob) for chunk, blob in new]
        self._append_codes(inserted, [blob for _, blob in new])
        return ChunkChanges(inserted=len(new), kept=len(kept), deleted=len(vanished))

    def _update_chunk(self, row: StoredChunk, relpath: str, chunk: NewChunk) -> None:
        """A kept row: new position (lines, pages); new keyword rows only if heading or text changed."""
        position = (chunk.seq, chunk.start_line, chunk.end_line, chunk.heading, chunk.text, chunk.page_start, chunk.page_end)
        if (row.seq, row.start_line, row.end_line, row.heading, row.text, row.page_start, row.page_end) == position:
            return
        self._conn.execute(
            "UPDATE chunks SET seq = ?, start_line = ?, end_line = ?, heading = ?, text = ?, page_start = ?, page_end = ?"
            " WHERE id = ?",
            (*position, row.id),
        )
        if (row.heading, row.text) != (chunk.heading, chunk.text):  # a hash that does not cover them
            self._delete_keyword_rows([(row.id,)])
            self._insert_keyword_rows(row.id, relpath, chunk)

    def _append_codes(self, chunk_ids: list[int], blobs: list[bytes]) -> None:
        """The coarse codes of newly inserted chunks (ids ascending, above every stored one)."""
        if not chunk_ids:
            return
        import numpy as np

        from edge_embed.store.coarse import append_codes

        append_codes(self._conn, chunk_ids, np.stack([np.frombuffer(blob, dtype=np.float32) for blob in blobs]))

    def _insert_chunk(self, file_id: int, relpath: str, chunk: NewChunk, blob: bytes) -> int:
        self._conn.execute(
            "INSERT INTO chunks(file_id, seq, start_line, end_line, heading, text, text_hash, page_start, page_end)"
            " VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                file_id, chunk.seq, chunk.start_line, chunk.end_line, chunk.heading, chunk.text, chunk.text_hash,
                chunk.page_start, chunk.page_end,
            ),
        )
        chunk_id = self._conn.last_insert_rowid()
        self._conn.execute("INSERT INTO chunk_vectors(chunk_id, embedding) VALUES(?, ?)", (chunk_id, blob))
        self._insert_keyword_rows(chunk_id, relpath, chunk)
        return chunk_id

    def _insert_keyword_rows(self, chunk_id: int, relpath: str, chunk: NewChunk) -> None:
        for table in ("chunks_fts", "chunks_stemmed"):
            self._conn.execute(
                f"INSERT INTO {table}(rowid, text, heading, path) VALUES(?, ?, ?, ?)",
                (chunk_id, chunk.text, chunk.heading or "", relpath),
            )
        write_cjk_rows(self._conn, chunk_id, chunk.text, chunk.heading or "", relpath)

    def _delete_keyword_rows(self, ids: list[tuple[int]]) -> None:
        for table in KEYWORD_TABLES:
            self._conn.executemany(f"DELETE FROM {table} WHERE rowid = ?", ids)

    def delete_file(self, file_id: int) -> None:
        with self.transaction():
            self._delete_file_rows(file_id)
            self._stamp_write()

    def _delete_file_rows(self, file_id: int) -> None:
        self._delete_chunk_rows(file_id)
        self._conn.execute("DELETE FROM files WHERE id = ?", (file_id,))

    def _delete_chunk_rows(self, file_id: int) -> None:
        self._delete_chunk_ids([row[0] for row in self._conn.execute("SELECT id FROM chunks WHERE file_id = ?", (file_id,))])

    def _delete_chunk_ids(self, chunk_ids: list[int]) -> None:
        """One point delete per virtual table and chunk: vec0 would scan for an IN list."""
        from edge_embed.store.coarse import delete_codes

        ids = [(chunk_id,) for chunk_id in chunk_ids]
        self._conn.executemany("DELETE FROM chunk_vectors WHERE chunk_id = ?", ids)
        delete_codes(self._conn, chunk_ids)
        self._delete_keyword_rows(ids)
        self._conn.executemany("DELETE FROM chunks WHERE id = ?", ids)

    def vectors_for_hashes(self, hashes: Iterable[str]) -> dict[str, np.ndarray]:
        """Stored vectors for embed-text hashes anywhere in the index (skip re-embedding)."""
        import numpy as np

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
