"""``store.vectors``: vector KNN (exact, or two stages over the sign-bit codes) and stored
vectors by text hash."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import apsw

from edge_embed.store.files import Files
from edge_embed.store.filters import chunk_filter
from edge_embed.store.meta import Meta
from edge_embed.store.part import Part
from edge_embed.store.records import MAX_KNN_K, vector_blob
from edge_embed.store.sqlite_errors import TranslatesErrors

if TYPE_CHECKING:
    import numpy as np

EXACT_SCAN_MAX_FLOATS = 5_000_000  # chunks x dims searched exactly (~5k chunks at 1024 dims, 2k at 2560): below it sqlite-vec's scan is as fast as two stages
RESCORE_MIN = 160  # candidates re-scored with their float vectors, at least ...
RESCORE_PER_RESULT = 1.5  # ... and this many per result asked for ...
CHUNKS_PER_RESCORED = 3000  # ... and one per this many chunks: near-ties grow with the corpus
POOL_FACTOR = 4  # Hamming candidates a scan must hold per re-scored one
SCAN_HEADROOM = 4  # a scan keeps candidates for this many times the depth asked, for deepening
# Below this many dimensions a sign bit per dimension says too little: embedding-like vectors,
# 20k chunks, 160 re-scored: recall@10 0.81 at 64 dims, 0.90 at 128, 0.99 at 256 (1.00 at
# 1024). The exact scan of so few floats per chunk is cheap anyway.
TWO_STAGE_MIN_DIMS = 256


class Vectors(Part):
    """Queries by vector, each in one read snapshot, with the path filters inside the search."""

    exact_scan_max_floats = EXACT_SCAN_MAX_FLOATS  # per instance, so tests can force either path
    two_stage_min_dims = TWO_STAGE_MIN_DIMS

    def __init__(self, conn: apsw.Connection, path: Path, meta: Meta, files: Files) -> None:
        super().__init__(conn, path)
        self._meta = meta  # the dims of a query vector
        self._files = files  # the path filters

    def vector_search(
        self, query_vec: np.ndarray, k: int, *, path_prefixes: Sequence[str] = (), globs: Sequence[str] = ()
    ) -> list[tuple[int, float]]:
        """The k chunks nearest the query: (chunk_id, L2 distance), nearest first.

        See ``vector_ranking``; this is its first ``k``.
        """
        return self.vector_ranking(query_vec, path_prefixes=path_prefixes, globs=globs).top(k)

    def vector_ranking(
        self, query_vec: np.ndarray, *, path_prefixes: Sequence[str] = (), globs: Sequence[str] = ()
    ) -> VectorRanking:
        """The chunks in order of distance to the query, read as deep as asked (``top``).

        Filters apply inside the search, so a filter that keeps 1% of the index still
        returns k results when k exist. An index of up to ``exact_scan_max_floats`` stored
        floats is searched exactly by sqlite-vec's scan; a bigger one in two stages: the
        nearest sign-bit codes (``coarse``), then the exact distance of those candidates.
        """
        blob = vector_blob(query_vec, self._meta.required_settings().dims)
        with self._conn:  # one snapshot for the filter and the choice of path
            file_ids = self._files.matching_files(path_prefixes, globs)
            exact, size = self._exact_path()
        return VectorRanking(self._conn, self.path, blob, file_ids, exact, size)

    def vector_path(self) -> str | None:
        """'exact' (sqlite-vec's scan of every float), 'two-stage' (the codes first), or None
        before the first vectors."""
        with self._conn:
            if self._meta.settings() is None:
                return None
            return "exact" if self._exact_path()[0] else "two-stage"

    def _exact_path(self) -> tuple[bool, int]:
        """(whether a vector query scans the floats exactly, about how many chunks there are).

        The size is the highest chunk id: a count the B-tree gives in O(log n) (count(*)
        reads every row), exact unless chunks were deleted, which only errs towards two stages.
        """
        size = int(self._scalar("SELECT coalesce(max(id), 0) FROM chunks"))
        dims = self._meta.required_settings().dims
        exact = (
            not self._has_table("chunk_bits")
            or dims < self.two_stage_min_dims
            or size * dims <= self.exact_scan_max_floats
        )
        return exact, size

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


class VectorRanking(TranslatesErrors):
    """One query's vector list, deepened on demand without redoing what was done.

    It reads the store after ``vector_ranking`` returned, so it is a class of the error
    boundary itself (``TranslatesErrors``): a vector table gone under a query (a rebuild)
    is ``IndexChanged``, not a raw apsw error.

    The two-stage path: (1) a scan of every sign-bit code keeps the nearest in Hamming
    distance, (2) these are ordered by the asymmetric estimate (float query against the
    code's signs), (3) the best ones by that estimate get their exact distance from the
    float vectors, and the result is ranked by that. The scan keeps enough candidates for
    ``SCAN_HEADROOM`` times the first depth asked, so a deeper ``top`` re-scores only the
    candidates not scored yet; the scan is redone only past that headroom. The exact path
    re-runs sqlite-vec's scan (small indexes only).
    """

    def __init__(
        self, conn: apsw.Connection, path: Path, blob: bytes, file_ids: list[int] | None, exact: bool, size: int
    ) -> None:
        self._conn = conn
        self.path = path  # the index file, named by the errors ``top`` raises
        self._blob = blob
        self._file_ids = file_ids
        self.exact = exact
        self._size = size  # about how many chunks the index holds
        self._order: np.ndarray | None = None  # the scanned candidates by the asymmetric estimate
        self._ids: np.ndarray | None = None  # Hamming candidates, nearest first (None: no scan yet)
        self._codes: np.ndarray | None = None
        self._scan_limit = 0  # how many candidates the last scan was asked for
        self._scored: dict[int, float] = {}  # chunk_id -> exact distance
        self.rescored = 0  # float vectors read back so far (what the deepening costs)

    def top(self, depth: int) -> list[tuple[int, float]]:
        """The ``depth`` nearest chunks as (chunk_id, L2 distance), nearest first."""
        if depth <= 0 or self._file_ids == []:
            return []
        if self.exact:
            return self._exact_nearest(depth)
        wanted = max(RESCORE_MIN, int(depth * RESCORE_PER_RESULT), self._size // CHUNKS_PER_RESCORED)
        pool = wanted * POOL_FACTOR
        import numpy as np

        from edge_embed.store.coarse import asymmetric_order

        if self._ids is None or (pool > self._scan_limit and len(self._ids) == self._scan_limit):
            self._scan_limit = pool * SCAN_HEADROOM
            self._ids, self._codes = self._coarse_candidates(self._scan_limit)
            self._order = None
        if self._order is None:  # every scanned candidate: the estimate is cheap, a float read is not
            self._order = asymmetric_order(self._codes, np.frombuffer(self._blob, dtype=np.float32))
        fresh = [int(i) for i in self._ids[self._order[:wanted]] if int(i) not in self._scored]
        self._scored.update(self._exact_distances(fresh))
        self.rescored += len(fresh)
        ranked = sorted(self._scored.items(), key=lambda item: (item[1], item[0]))
        return ranked[:depth]

    def _exact_nearest(self, k: int) -> list[tuple[int, float]]:
        """sqlite-vec's exhaustive KNN; beyond its limit of 4096 an exact vec_distance_l2 scan."""
        where, params = chunk_filter(self._file_ids, "chunk_id")
        if k <= MAX_KNN_K:
            sql = f"SELECT chunk_id, distance FROM chunk_vectors WHERE embedding MATCH ? AND k = ? {where} ORDER BY distance"
            rows = self._conn.execute(sql, [self._blob, k, *params]).fetchall()
        else:
            sql = (
                f"SELECT chunk_id, vec_distance_l2(embedding, ?) AS distance FROM chunk_vectors "
                f"WHERE 1 {where} ORDER BY distance, chunk_id LIMIT ?"
            )
            rows = self._conn.execute(sql, [self._blob, *params, k]).fetchall()
        return [(int(chunk_id), float(distance)) for chunk_id, distance in rows]

    def _coarse_candidates(self, limit: int) -> tuple[np.ndarray, np.ndarray]:
        """(chunk ids, codes) of the ``limit`` nearest sign-bit codes, nearest first, filters applied."""
        import numpy as np

        from edge_embed.store.coarse import nearest_codes

        query = np.frombuffer(self._blob, dtype=np.float32)
        with self._conn:  # one snapshot for the filter's chunks and the scan
            allowed = None
            if self._file_ids is not None:
                where, params = chunk_filter(self._file_ids, "id")
                allowed = np.array(
                    [row[0] for row in self._conn.execute(f"SELECT id FROM chunks WHERE 1 {where} ORDER BY id", params)],
                    dtype=np.int64,
                )
            return nearest_codes(self._conn, query, limit, allowed)

    def _exact_distances(self, ids: Sequence[int]) -> list[tuple[int, float]]:
        """(chunk_id, L2 distance) for those of ``ids`` still stored, from the float vectors."""
        import numpy as np

        if not len(ids):
            return []
        rows = self._conn.executemany(
            "SELECT chunk_id, embedding FROM chunk_vectors WHERE chunk_id = ?", [(int(i),) for i in ids]
        ).fetchall()
        if not rows:
            return []
        vectors = np.frombuffer(b"".join(row[1] for row in rows), dtype=np.float32).reshape(len(rows), -1)
        distances = np.linalg.norm(vectors - np.frombuffer(self._blob, dtype=np.float32), axis=1)
        return [(int(row[0]), float(d)) for row, d in zip(rows, distances)]
