"""The coarse stage of vector search: one sign bit per dimension, scanned in numpy.

Why sign bits (binary quantisation) and why not sqlite-vec's own ``bit[N]`` KNN: a bit code
is 32x smaller than the float vector (128 bytes at 1024 dims), so a scan over every chunk
reads 1/32 of the bytes; int8 codes are only 4x smaller and a Matryoshka prefix helps only
models trained for it. sqlite-vec 0.1.9's KNN keeps its top k by insertion, so its cost
grows with k (100k x 1024 bits: 22 ms at k = 40, 190 ms at k = 400, 620 ms at k = 1000),
while the re-scoring needs hundreds of candidates. So the codes live in a plain table,
``chunk_bits``, packed in blocks of up to ``BLOCK_ROWS`` chunks (one row per block: the
block's chunk ids and their codes), and the scan reads the blocks in order and computes
Hamming distances with numpy (XOR + popcount), keeping only the best ``limit`` candidates
as it goes: memory is one batch of blocks plus the candidates, flat in corpus size.

Blocks hold ascending chunk ids (ids only grow: ``chunks.id`` is AUTOINCREMENT), keyed by
the first id the block was created with, so the block of a chunk is the one with the
largest key <= its id. New chunks are appended to the last block; a deleted chunk is cut
out of its block (an emptied block is deleted), so the scan never reads dead codes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import apsw
import numpy as np

BLOCK_ROWS = 256  # chunks per block: small enough that rewriting one per file write is cheap
SCAN_BATCH_ROWS = 16_384  # codes scored per numpy step: a few MB of temporaries
Progress = Callable[[int, int], None]  # (done, total)
_BYTE_POPCOUNT = np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1).sum(axis=1).astype(np.uint8)
_BYTE_BITS = np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1).T.astype(np.float32)  # 8 x 256


def code_bytes(dims: int) -> int:
    """Bytes of one code: a bit per dimension, padded to whole 64-bit words."""
    return (dims + 63) // 64 * 8


def sign_codes(vectors: np.ndarray) -> np.ndarray:
    """One code per row: bit i set when component i is positive, padded to 64-bit words."""
    vectors = np.atleast_2d(vectors)
    packed = np.packbits(vectors > 0, axis=1)
    padded = np.zeros((len(vectors), code_bytes(vectors.shape[1])), dtype=np.uint8)
    padded[:, : packed.shape[1]] = packed
    return padded


def create_coarse_table(conn: apsw.Connection) -> None:
    conn.execute("CREATE TABLE chunk_bits(first_id INTEGER PRIMARY KEY, ids BLOB NOT NULL, codes BLOB NOT NULL)")


def append_codes(conn: apsw.Connection, ids: list[int], vectors: np.ndarray) -> None:
    """Append chunks (ids larger than any stored, ascending) to the last block, then new blocks."""
    if not ids:
        return
    codes = sign_codes(vectors)
    new_ids = np.asarray(ids, dtype=np.int64)
    last = conn.execute("SELECT first_id, ids, codes FROM chunk_bits ORDER BY first_id DESC LIMIT 1").fetchall()
    if last:
        first_id, old_ids, old_codes = last[0]
        room = BLOCK_ROWS - len(old_ids) // 8
        if room > 0:
            _write_block(
                conn,
                first_id,
                np.concatenate([np.frombuffer(old_ids, dtype=np.int64), new_ids[:room]]),
                np.concatenate([np.frombuffer(old_codes, dtype=np.uint8), codes[:room].ravel()]),
            )
            new_ids, codes = new_ids[room:], codes[room:]
    for start in range(0, len(new_ids), BLOCK_ROWS):
        block_ids = new_ids[start : start + BLOCK_ROWS]
        _write_block(conn, int(block_ids[0]), block_ids, codes[start : start + BLOCK_ROWS].ravel())


def delete_codes(conn: apsw.Connection, ids: Iterable[int]) -> None:
    """Cut these chunks out of their blocks (ids not stored are ignored)."""
    pending = sorted(set(ids), reverse=True)  # largest first: its block is the last one holding any
    while pending:
        row = conn.execute(
            "SELECT first_id, ids, codes FROM chunk_bits WHERE first_id <= ? ORDER BY first_id DESC LIMIT 1",
            (pending[0],),
        ).fetchall()
        if not row:
            return  # every id left is below the first block
        first_id, raw_ids, raw_codes = row[0]
        in_block = [chunk_id for chunk_id in pending if chunk_id >= first_id]
        pending = pending[len(in_block) :]
        block_ids = np.frombuffer(raw_ids, dtype=np.int64)
        keep = ~np.isin(block_ids, in_block)
        if keep.all():
            continue
        if not keep.any():
            conn.execute("DELETE FROM chunk_bits WHERE first_id = ?", (first_id,))
            continue
        width = len(raw_codes) // len(block_ids)
        codes = np.frombuffer(raw_codes, dtype=np.uint8).reshape(len(block_ids), width)
        _write_block(conn, first_id, block_ids[keep], codes[keep].ravel())


def _write_block(conn: apsw.Connection, first_id: int, ids: np.ndarray, codes: np.ndarray) -> None:
    conn.execute(
        "INSERT INTO chunk_bits(first_id, ids, codes) VALUES(?, ?, ?) "
        "ON CONFLICT(first_id) DO UPDATE SET ids = excluded.ids, codes = excluded.codes",
        (first_id, ids.astype(np.int64).tobytes(), np.ascontiguousarray(codes, dtype=np.uint8).tobytes()),
    )


def fill_coarse_table(
    conn: apsw.Connection, rows: Iterator[tuple[int, bytes]], total: int, progress: Progress | None = None
) -> None:
    """Fill an empty ``chunk_bits`` from (chunk_id, float32 blob) rows in ascending id order."""
    ids: list[int] = []
    vectors: list[np.ndarray] = []
    done = 0
    for chunk_id, blob in rows:
        ids.append(chunk_id)
        vectors.append(np.frombuffer(blob, dtype=np.float32))
        if len(ids) == BLOCK_ROWS * 16:
            append_codes(conn, ids, np.stack(vectors))
            done += len(ids)
            ids, vectors = [], []
            if progress:
                progress(done, total)
    if ids:
        append_codes(conn, ids, np.stack(vectors))
        if progress:
            progress(done + len(ids), total)


def coarse_count(conn: apsw.Connection) -> int:
    """Chunks with a code (the sum of the block sizes)."""
    return int(conn.execute("SELECT coalesce(sum(length(ids)), 0) / 8 FROM chunk_bits").fetchall()[0][0])


def nearest_codes(
    conn: apsw.Connection, query_vec: np.ndarray, limit: int, allowed: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(chunk ids, codes) of the ``limit`` codes nearest the query's in Hamming distance,
    nearest first.

    ``allowed`` (sorted chunk ids) restricts the scan to those chunks, so a filter that keeps
    1% of the index still yields ``limit`` candidates when that many exist. Ties are broken
    by chunk id, so the order is the same on every run.
    """
    query = sign_codes(query_vec)[0].view(np.uint64)
    best_ids = np.empty(0, dtype=np.int64)
    best_codes = np.empty((0, len(query)), dtype=np.uint64)
    best_dist = np.empty(0, dtype=np.uint16)
    for ids, codes in _batches(conn, len(query) * 8):
        if allowed is not None:
            mask = np.isin(ids, allowed, assume_unique=True)
            ids, codes = ids[mask], codes[mask]
        dist = _hamming(codes, query)
        keep = _best(ids, dist, limit)  # the batch's own best first: the merge stays small
        ids = np.concatenate([best_ids, ids[keep]])
        dist = np.concatenate([best_dist, dist[keep]])
        codes = np.concatenate([best_codes, codes[keep]])
        keep = _best(ids, dist, limit)
        best_ids, best_dist, best_codes = ids[keep], dist[keep], codes[keep]
    order = np.lexsort((best_ids, best_dist))
    return best_ids[order], best_codes[order].view(np.uint8)


def _hamming(codes: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Hamming distances, one per row, as uint16 (sqlite-vec's 8,192 dims at most fit).

    A plain integer sum: the BLAS matrix-vector product used before was 60x slower (24 ms
    against 0.4 ms for 16k rows of 40 words) on the 2-core test machine.
    """
    return bit_counts(codes ^ query).sum(axis=1, dtype=np.uint16)


def bit_counts(words: np.ndarray) -> np.ndarray:
    """Set bits per element (numpy >= 2's popcount ufunc) or, on numpy 1.26, per byte of
    each row (a table lookup): either way a row's sum is its number of set bits."""
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(words)
    return _BYTE_POPCOUNT[words.view(np.uint8)]


def asymmetric_order(codes: np.ndarray, query_vec: np.ndarray) -> np.ndarray:
    """Positions of ``codes`` best first by the float query's dot product with each code's
    signs (+1/-1): a much closer estimate of the cosine than the Hamming distance of the two
    codes, so fewer candidates need their float vector read back (on embedding-like vectors
    100 re-scored candidates reach the recall that 400 need in Hamming order)."""
    query = np.zeros(codes.shape[1] * 8, dtype=np.float32)
    query[: len(query_vec)] = query_vec
    # byte_sums[j, b]: the sum of the query components whose bits are set in byte value b at
    # byte j; one gather per code byte instead of unpacking every bit (3.5x faster)
    byte_sums = (query.reshape(-1, 8, 1) * _BYTE_BITS).sum(axis=1)  # no BLAS: see _hamming
    scores = byte_sums[np.arange(codes.shape[1]), codes].sum(axis=1)  # = (q.signs + sum q) / 2
    return np.argsort(-scores, kind="stable")


def _batches(conn: apsw.Connection, width: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(ids, codes as uint64 words) for about SCAN_BATCH_ROWS chunks at a time, in id order."""
    ids_parts: list[bytes] = []
    code_parts: list[bytes] = []
    rows = 0
    for raw_ids, raw_codes in conn.execute("SELECT ids, codes FROM chunk_bits ORDER BY first_id"):
        ids_parts.append(raw_ids)
        code_parts.append(raw_codes)
        rows += len(raw_ids) // 8
        if rows >= SCAN_BATCH_ROWS:
            yield _decode(ids_parts, code_parts, width)
            ids_parts, code_parts, rows = [], [], 0
    if rows:
        yield _decode(ids_parts, code_parts, width)


def _decode(ids_parts: list[bytes], code_parts: list[bytes], width: int) -> tuple[np.ndarray, np.ndarray]:
    ids = np.frombuffer(b"".join(ids_parts), dtype=np.int64)
    codes = np.frombuffer(b"".join(code_parts), dtype=np.uint64).reshape(len(ids), width // 8)
    return ids, codes


def _best(ids: np.ndarray, dist: np.ndarray, limit: int) -> np.ndarray:
    """Positions of the ``limit`` smallest distances (ties at the cut: smaller ids win)."""
    if len(ids) <= limit:
        return np.arange(len(ids))
    key = (dist.astype(np.int64) << 48) | ids  # distance and id in one sortable key; ids < 2**48
    return np.argpartition(key, limit - 1)[:limit]
