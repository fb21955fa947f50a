"""Writing an index: files with their chunks, vectors and keyword rows, in one transaction each."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Sequence

import numpy as np

from edge_embed.store.base import StoreBase
from edge_embed.store.coarse import append_codes, delete_codes
from edge_embed.store.filters import absolute
from edge_embed.store.keywords import has_cjk
from edge_embed.store.records import NewChunk, vector_blob


class StoreWrites(StoreBase):
    """Every write keeps chunks, vectors and both FTS tables in one transaction."""

    def touch_file(self, file_id: int, size: int, mtime_ns: int) -> None:
        """Same content, new stat (e.g. a `touch` or a checkout): no re-embedding."""
        with self.transaction():
            self._conn.execute("UPDATE files SET size = ?, mtime_ns = ? WHERE id = ?", (size, mtime_ns, file_id))
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
    ) -> None:
        """Replace any previous version of a file with these chunks, in one transaction.

        A crash or Ctrl-C leaves either the old version or the new one, never a mix.
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
            self._delete_chunk_rows(file_id)
            ids = [self._insert_chunk(file_id, relpath, chunk, blob) for chunk, blob in zip(chunks, blobs)]
            if ids:
                append_codes(self._conn, ids, np.stack([np.frombuffer(blob, dtype=np.float32) for blob in blobs]))

    def _insert_chunk(self, file_id: int, relpath: str, chunk: NewChunk, blob: bytes) -> int:
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
        if has_cjk(chunk.text):
            self._conn.execute("INSERT INTO chunks_cjk(rowid, text) VALUES(?, ?)", (chunk_id, chunk.text))
        return chunk_id

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
        delete_codes(self._conn, (chunk_id for (chunk_id,) in ids))
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
