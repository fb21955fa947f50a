"""Reading an index: vector KNN, BM25 keyword search, and chunks by id."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Sequence

from typing import TYPE_CHECKING

from edge_embed.files import gitignore_spec
from edge_embed.store.base import StoreBase
from edge_embed.store.filters import as_stored, chunk_filter, under_prefix
from edge_embed.store.keywords import bm25_ceiling, fts5_idf, keyword_sources, keyword_terms, read_varint
from edge_embed.store.records import MAX_KNN_K, ChunkRecord, vector_blob
from edge_embed.store.schema import column_exists
from edge_embed.store.sqlite_errors import translating_errors

if TYPE_CHECKING:
    import numpy as np

EXACT_SCAN_MAX_FLOATS = 5_000_000  # chunks x dims searched exactly (~5k chunks at 1024 dims, 2k at 2560): below it sqlite-vec's scan is as fast as two stages
RESCORE_MIN = 160  # candidates re-scored with their float vectors, at least ...
RESCORE_PER_RESULT = 1.5  # ... and this many per result asked for ...
CHUNKS_PER_RESCORED = 3000  # ... and one per this many chunks: near-ties grow with the corpus
POOL_FACTOR = 4  # Hamming candidates a scan must hold per re-scored one
SCAN_HEADROOM = 4  # a scan keeps candidates for this many times the depth asked, for deepening
# BM25 weight of a query word found in a chunk's text, its heading, its file's path. A
# heading or a file name says what a whole section or file is about: measured on the dev
# sets (docs/benchmarks.md, "Keyword levers"), 4 lifted keyword MRR@10 on both, 2 less.
BM25_COLUMN_WEIGHTS = (1.0, 4.0, 4.0)
_RANK_FUNCTION = f"bm25({', '.join(map(str, BM25_COLUMN_WEIGHTS))})"
# Below this many dimensions a sign bit per dimension says too little: embedding-like vectors,
# 20k chunks, 160 re-scored: recall@10 0.81 at 64 dims, 0.90 at 128, 0.99 at 256 (1.00 at
# 1024). The exact scan of so few floats per chunk is cheap anyway.
TWO_STAGE_MIN_DIMS = 256
KEYWORD_POOL_FACTOR = 4  # candidates per keyword source when several are summed


class StoreRetrieval(StoreBase):
    """Queries; each runs in one read snapshot, with the path filters inside the search."""

    exact_scan_max_floats = EXACT_SCAN_MAX_FLOATS  # per instance, so tests can force either path
    two_stage_min_dims = TWO_STAGE_MIN_DIMS

    def _filtered_file_ids(self, path_prefixes: Sequence[str], globs: Sequence[str]) -> list[int] | None:
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
        blob = vector_blob(query_vec, self._dims())
        with self._conn:  # one snapshot for the filter and the choice of path
            file_ids = self._filtered_file_ids(path_prefixes, globs)
            exact, size = self._exact_path()
        return VectorRanking(self, blob, file_ids, exact, size)

    def vector_path(self) -> str | None:
        """'exact' (sqlite-vec's scan of every float), 'two-stage' (the codes first), or None
        before the first vectors."""
        with self._conn:
            if self.settings() is None:
                return None
            return "exact" if self._exact_path()[0] else "two-stage"

    def stats(self) -> dict[str, object]:
        """The base figures, and which vector path a query takes (for `status`)."""
        return {**super().stats(), "vector_path": self.vector_path()}

    def _exact_path(self) -> tuple[bool, int]:
        """(whether a vector query scans the floats exactly, about how many chunks there are).

        The size is the highest chunk id: a count the B-tree gives in O(log n) (count(*)
        reads every row), exact unless chunks were deleted, which only errs towards two stages.
        """
        size = int(self._scalar("SELECT coalesce(max(id), 0) FROM chunks"))
        dims = self._dims()
        exact = (
            not self._has_table("chunk_bits")
            or dims < self.two_stage_min_dims
            or size * dims <= self.exact_scan_max_floats
        )
        return exact, size

    def _exact_nearest(self, blob: bytes, k: int, file_ids: list[int] | None) -> list[tuple[int, float]]:
        """sqlite-vec's exhaustive KNN; beyond its limit of 4096 an exact vec_distance_l2 scan."""
        where, params = chunk_filter(file_ids, "chunk_id")
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

    def _coarse_candidates(self, blob: bytes, limit: int, file_ids: list[int] | None) -> tuple[np.ndarray, np.ndarray]:
        """(chunk ids, codes) of the ``limit`` nearest sign-bit codes, nearest first, filters applied."""
        import numpy as np

        from edge_embed.store.coarse import nearest_codes

        query = np.frombuffer(blob, dtype=np.float32)
        with self._conn:  # one snapshot for the filter's chunks and the scan
            allowed = None
            if file_ids is not None:
                where, params = chunk_filter(file_ids, "id")
                allowed = np.array(
                    [row[0] for row in self._conn.execute(f"SELECT id FROM chunks WHERE 1 {where} ORDER BY id", params)],
                    dtype=np.int64,
                )
            return nearest_codes(self._conn, query, limit, allowed)

    def _exact_distances(self, blob: bytes, ids: Sequence[int]) -> list[tuple[int, float]]:
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
        distances = np.linalg.norm(vectors - np.frombuffer(blob, dtype=np.float32), axis=1)
        return [(int(row[0]), float(d)) for row, d in zip(rows, distances)]

    def keyword_search(
        self, text: str, k: int, *, path_prefixes: Sequence[str] = (), globs: Sequence[str] = ()
    ) -> list[tuple[int, float]]:
        """BM25 keyword search: (chunk_id, score) with higher = better, best first.

        The user's text never reaches MATCH raw: ``keyword_terms`` turns it into quoted
        terms. Up to three sources score a chunk, and their scores are added: words by
        the unicode61 table, long CJK runs by the trigram table, 1-2 character CJK runs
        by the bigram table, each with FTS5's BM25 and the same column weights. BM25 is
        itself a sum over query terms, so adding the per-source sums gives a chunk credit
        for every term it contains, whichever table found it. With several sources each
        contributes its top ``k * KEYWORD_POOL_FACTOR`` candidates; a chunk outside a pool
        gets 0 from that source.
        """
        sources = self._keyword_sources(text)
        if not sources or k <= 0:
            return []
        pool = k if len(sources) == 1 else k * KEYWORD_POOL_FACTOR
        scores: dict[int, float] = defaultdict(float)
        with self._conn:  # one snapshot for all sources
            file_ids = self._filtered_file_ids(path_prefixes, globs)
            if file_ids == []:
                return []
            for table, phrases in sources:
                for chunk_id, score in self._fts_scores(table, " OR ".join(phrases), pool, file_ids):
                    scores[chunk_id] += score
        ranked = sorted(scores.items(), key=lambda item: (-item[1], item[0]))
        return ranked[:k]

    def keyword_ceiling(self, text: str) -> float:
        """The most score ``keyword_search(text)`` could give any chunk (0: no terms).

        Each source's phrases weigh what FTS5's bm25() gives them, from the whole index
        (filters do not change BM25's statistics either); a phrase no chunk contains still
        counts, as a query word the index lacks makes every match a weaker one.
        """
        idfs = []
        with self._conn:
            for table, phrases in self._keyword_sources(text):
                rows = self._fts_row_count(table)
                count = f"SELECT count(*) FROM {table} WHERE {table} MATCH ?"
                idfs.extend(fts5_idf(rows, self._scalar(count, (phrase,))) for phrase in phrases)
        return bm25_ceiling(idfs)

    def _keyword_sources(self, text: str) -> list[tuple[str, list[str]]]:
        """``keyword_sources`` of the tables this index has: one an older edge-embed wrote
        lacks those of the migrations its next writer runs (``pending_migrations``), and
        its searches answer without them meanwhile."""
        return [(table, phrases) for table, phrases in keyword_sources(keyword_terms(text)) if self._has_table(table)]

    def _fts_row_count(self, table: str) -> int:
        """The row count FTS5's bm25() uses: the first varint of the table's averages record
        (``{table}_data`` row 1), read directly, as counting a contentless table scans it."""
        block = self._scalar(f"SELECT block FROM {table}_data WHERE id = 1")
        return read_varint(block) if block else 0

    def _fts_scores(self, table: str, expression: str, pool: int, file_ids: list[int] | None) -> list[tuple[int, float]]:
        where, params = chunk_filter(file_ids, "rowid")
        sql = f"SELECT rowid, -rank FROM {table} WHERE {table} MATCH ? AND rank MATCH ? {where} ORDER BY rank LIMIT ?"
        return [(int(r), float(s)) for r, s in self._conn.execute(sql, [expression, _RANK_FUNCTION, *params, pool])]

    # ---------------------------------------------------------------- reading back
    def has_file(self, path: str) -> bool:
        """Whether ``path`` (as stored: the root resolved, the rest as walked) is an indexed file."""
        return self._scalar("SELECT 1 FROM files WHERE path = ? LIMIT 1", (path,)) is not None

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


@translating_errors  # it reads the store outside the Store's own methods: the same boundary
class VectorRanking:
    """One query's vector list, deepened on demand without redoing what was done.

    The two-stage path: (1) a scan of every sign-bit code keeps the nearest in Hamming
    distance, (2) these are ordered by the asymmetric estimate (float query against the
    code's signs), (3) the best ones by that estimate get their exact distance from the
    float vectors, and the result is ranked by that. The scan keeps enough candidates for
    ``SCAN_HEADROOM`` times the first depth asked, so a deeper ``top`` re-scores only the
    candidates not scored yet; the scan is redone only past that headroom. The exact path
    re-runs sqlite-vec's scan (small indexes only).
    """

    def __init__(
        self, store: StoreRetrieval, blob: bytes, file_ids: list[int] | None, exact: bool, size: int
    ) -> None:
        self._store = store
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

    @property
    def path(self):
        """The index file, named by the errors ``top`` raises."""
        return self._store.path

    def top(self, depth: int) -> list[tuple[int, float]]:
        """The ``depth`` nearest chunks as (chunk_id, L2 distance), nearest first."""
        if depth <= 0 or self._file_ids == []:
            return []
        if self.exact:
            return self._store._exact_nearest(self._blob, depth, self._file_ids)
        wanted = max(RESCORE_MIN, int(depth * RESCORE_PER_RESULT), self._size // CHUNKS_PER_RESCORED)
        pool = wanted * POOL_FACTOR
        import numpy as np

        from edge_embed.store.coarse import asymmetric_order

        if self._ids is None or (pool > self._scan_limit and len(self._ids) == self._scan_limit):
            self._scan_limit = pool * SCAN_HEADROOM
            self._ids, self._codes = self._store._coarse_candidates(self._blob, self._scan_limit, self._file_ids)
            self._order = None
        if self._order is None:  # every scanned candidate: the estimate is cheap, a float read is not
            self._order = asymmetric_order(self._codes, np.frombuffer(self._blob, dtype=np.float32))
        fresh = [int(i) for i in self._ids[self._order[:wanted]] if int(i) not in self._scored]
        self._scored.update(self._store._exact_distances(self._blob, fresh))
        self.rescored += len(fresh)
        ranked = sorted(self._scored.items(), key=lambda item: (item[1], item[0]))
        return ranked[:depth]
