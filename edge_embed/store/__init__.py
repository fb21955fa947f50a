"""The index file: the only package that writes SQL.

One SQLite file per index, opened through apsw because the stdlib ``sqlite3`` module of
many Pythons cannot load extensions. It holds:

* ``roots`` / ``files`` / ``chunks``: what was indexed, where, and the chunk texts;
* ``chunk_vectors``: a sqlite-vec ``vec0`` table keyed by chunk id. L2 distance on
  L2-normalised vectors ranks exactly like cosine and is sqlite-vec's fastest kernel;
* ``chunk_bits``: one sign bit per dimension of every vector, packed in blocks, for the
  coarse first stage of vector search on big indexes (see ``coarse``);
* ``chunks_fts``: FTS5 (unicode61, diacritics folded) over text, heading and relpath for
  BM25 keyword search;
* ``chunks_cjk``: FTS5 with the ``trigram`` tokenizer, because unicode61 does not segment
  Chinese or Japanese. Only chunks whose text contains CJK go in, so an index of
  English text does not pay for a trigram index several times the size of its text.

Both FTS tables are contentless (``contentless_delete=1``): the text is stored once, in
``chunks``. One module per concern:

| module | owns |
| --- | --- |
| ``schema`` | connecting with sqlite-vec, the numbered migrations, the vector table |
| ``lock`` | the writer lock (one writer per index file) |
| ``records`` | the dataclasses read and written, settings comparison |
| ``keywords`` | free text to quoted FTS5 terms, by script |
| ``filters`` | ``--in`` / ``--glob`` path filters |
| ``coarse`` | the sign-bit codes: blocks, their upkeep, the Hamming scan |
| ``base`` | open, identity, transactions, settings, roots, stats, integrity |
| ``writes`` | files, chunks, vectors, keyword rows |
| ``retrieval`` | vector KNN, BM25, chunks by id |
"""

from __future__ import annotations

from edge_embed.store.keywords import MAX_QUERY_TERMS, KeywordTerms, fts5_phrases, fts5_query, keyword_terms
from edge_embed.store.records import ChunkRecord, FileState, IndexSettings, NewChunk, RootInfo
from edge_embed.store.retrieval import MAX_KNN_K, StoreRetrieval
from edge_embed.store.schema import SCHEMA_VERSION, sqlite_vec_version
from edge_embed.store.writes import StoreWrites


class Store(StoreWrites, StoreRetrieval):
    """One open index file. Not thread-safe: one Store per thread or process."""


__all__ = [
    "MAX_KNN_K",
    "MAX_QUERY_TERMS",
    "ChunkRecord",
    "FileState",
    "IndexSettings",
    "KeywordTerms",
    "NewChunk",
    "RootInfo",
    "SCHEMA_VERSION",
    "Store",
    "fts5_phrases",
    "fts5_query",
    "keyword_terms",
    "sqlite_vec_version",
]
