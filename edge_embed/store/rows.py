"""One chunk's rows across its tables (``chunks``, ``chunk_vectors``, ``chunk_bits``, the FTS
tables), written and deleted together, inside the caller's transaction.

Functions over the connection, not a part: only ``store.files`` writes chunks, and it calls
them from its public methods, so they run inside the store's error boundary.
"""

from __future__ import annotations

import apsw

from edge_embed.store.records import NewChunk, StoredChunk
from edge_embed.store.schema import KEYWORD_TABLES, write_keyword_rows


def insert_chunk(conn: apsw.Connection, file_id: int, relpath: str, chunk: NewChunk, blob: bytes, words: str) -> int:
    """A new chunk row with its vector and keyword rows (``words``: see ``keywords.keyword_texts``);
    returns its id (the caller adds its code)."""
    conn.execute(
        "INSERT INTO chunks(file_id, seq, start_line, end_line, heading, text, text_hash, page_start, page_end)"
        " VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            file_id, chunk.seq, chunk.start_line, chunk.end_line, chunk.heading, chunk.text, chunk.text_hash,
            chunk.page_start, chunk.page_end,
        ),
    )
    chunk_id = conn.last_insert_rowid()
    conn.execute("INSERT INTO chunk_vectors(chunk_id, embedding) VALUES(?, ?)", (chunk_id, blob))
    _insert_keyword_rows(conn, chunk_id, relpath, chunk.heading, words)
    return chunk_id


def update_chunk(
    conn: apsw.Connection, row: StoredChunk, relpath: str, chunk: NewChunk, words: str, stored_words: str
) -> None:
    """A kept row: new position (lines, pages); new keyword rows only if their heading or
    words changed (``stored_words``: what they hold now, the chunk's with its neighbours')."""
    position = (chunk.seq, chunk.start_line, chunk.end_line, chunk.heading, chunk.text, chunk.page_start, chunk.page_end)
    if (row.seq, row.start_line, row.end_line, row.heading, row.text, row.page_start, row.page_end) != position:
        conn.execute(
            "UPDATE chunks SET seq = ?, start_line = ?, end_line = ?, heading = ?, text = ?, page_start = ?, page_end = ?"
            " WHERE id = ?",
            (*position, row.id),
        )
    if (row.heading, stored_words) != (chunk.heading, words):  # a hash that does not cover them
        _delete_keyword_rows(conn, [(row.id,)])
        _insert_keyword_rows(conn, row.id, relpath, chunk.heading, words)


def append_codes(conn: apsw.Connection, chunk_ids: list[int], blobs: list[bytes]) -> None:
    """The coarse codes of newly inserted chunks (ids ascending, above every stored one)."""
    if not chunk_ids:
        return
    import numpy as np

    from edge_embed.store import coarse

    coarse.append_codes(conn, chunk_ids, np.stack([np.frombuffer(blob, dtype=np.float32) for blob in blobs]))


def delete_chunk_ids(conn: apsw.Connection, chunk_ids: list[int]) -> None:
    """One point delete per virtual table and chunk: vec0 would scan for an IN list."""
    from edge_embed.store.coarse import delete_codes

    ids = [(chunk_id,) for chunk_id in chunk_ids]
    conn.executemany("DELETE FROM chunk_vectors WHERE chunk_id = ?", ids)
    delete_codes(conn, chunk_ids)
    _delete_keyword_rows(conn, ids)
    conn.executemany("DELETE FROM chunks WHERE id = ?", ids)


def delete_file_rows(conn: apsw.Connection, file_id: int) -> None:
    """A file's row and every row of its chunks."""
    delete_chunk_ids(conn, [row[0] for row in conn.execute("SELECT id FROM chunks WHERE file_id = ?", (file_id,))])
    conn.execute("DELETE FROM files WHERE id = ?", (file_id,))


def _insert_keyword_rows(conn: apsw.Connection, chunk_id: int, relpath: str, heading: str | None, words: str) -> None:
    write_keyword_rows(conn, chunk_id, words, heading or "", relpath)


def _delete_keyword_rows(conn: apsw.Connection, ids: list[tuple[int]]) -> None:
    for table in KEYWORD_TABLES:
        conn.executemany(f"DELETE FROM {table} WHERE rowid = ?", ids)
