"""``store.keywords``: BM25 keyword search over the FTS5 tables, and its score ceiling."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import apsw

from edge_embed.store.files import Files
from edge_embed.store.filters import chunk_filter
from edge_embed.store.keywords import bm25_ceiling, fts5_idf, keyword_sources, keyword_terms, read_varint
from edge_embed.store.part import Part

# BM25 weight of a query word found in a chunk's text, its heading, its file's path. A
# heading or a file name says what a whole section or file is about: measured on the dev
# sets (docs/benchmarks.md, "Keyword levers"), 4 lifted keyword MRR@10 on both, 2 less.
BM25_COLUMN_WEIGHTS = (1.0, 4.0, 4.0)
_RANK_FUNCTION = f"bm25({', '.join(map(str, BM25_COLUMN_WEIGHTS))})"
KEYWORD_POOL_FACTOR = 4  # candidates per keyword source when several are summed




class Keywords(Part):
    """Queries by words, each in one read snapshot, with the path filters inside the search."""

    def __init__(self, conn: apsw.Connection, path: Path, files: Files) -> None:
        super().__init__(conn, path)
        self._files = files  # the path filters

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
            file_ids = self._files.matching_files(path_prefixes, globs)
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
