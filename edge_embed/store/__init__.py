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
* ``chunks_stemmed``: the same through FTS5's Porter stemmer; a query searches both and
  adds the scores, so other forms of a word match and its own form counts more;
* ``chunks_cjk``: FTS5 with the ``trigram`` tokenizer over text, heading and relpath,
  because unicode61 does not segment Chinese, Japanese or Korean (Hangul particles attach
  to words: 서울에서 is 서울 + 에서). It finds CJK terms of 3+ characters;
* ``chunks_cjk_bigrams``: the same columns as the overlapping bigrams of each CJK run
  (``cjk_bigram_document``), so 1-2 character terms, which a trigram index cannot find,
  are an index lookup too. Only chunks with CJK in their text, heading or file name go
  into these two, so an index of English text does not pay for them.

All FTS tables are contentless (``contentless_delete=1``): the text is stored once, in
``chunks``. A chunk's row in each of them holds its text between its neighbours' texts in
the same section (``keywords.keyword_texts``, migration 6), so BM25 sees what one passage
says across a chunk boundary; hits are still the chunk itself. One module per concern:

| module | owns |
| --- | --- |
| ``schema`` | connecting with sqlite-vec, the numbered migrations, the vector table |
| ``lock`` | the writer lock (one writer per index file) |
| ``records`` | the dataclasses read and written, settings comparison |
| ``keywords`` | free text to quoted FTS5 terms, by script |
| ``filters`` | ``--in`` paths spelled like stored paths, the SQL of a path filter |
| ``coarse`` | the sign-bit codes: blocks, their upkeep, the Hamming scan |
| ``sqlite_errors`` | the one error boundary: apsw errors (full disk, damaged file, busy...) as one-line ``EdgeEmbedError`` subclasses |
| ``part`` | what the parts share: the store's connection, transactions |
| ``meta`` | ``store.meta``: settings, the last write, extraction timeouts |
| ``rows`` | one chunk's rows across its tables, written and deleted together |
| ``files`` | ``store.files``: roots, files and chunks (unchanged texts keep their rows) |
| ``vectors`` | ``store.vectors``: vector KNN, exact or in two stages; vectors by text hash |
| ``keyword_search`` | ``store.keywords``: BM25 over the FTS tables, and its ceiling |
| ``maintenance`` | ``store.maintenance``: stats, wasted space and compaction, integrity, a rebuild's copy |
| ``core`` | ``Store``: open, identity, schema, transactions, the writer lock; owns the connection and the parts |
| ``readers`` | ``ThreadReaders``: one read Store per thread and index path, reopened when the file is another |
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from edge_embed.store.filters import as_stored, under_prefix
from edge_embed.store.keywords import MAX_QUERY_TERMS, KeywordTerms, fts5_phrases, fts5_query, keyword_terms
from edge_embed.store.records import MAX_KNN_K, ChunkChanges, ChunkRecord, FileRecord, FileState, IndexSettings, NewChunk, RootInfo

# The SQLite side loads on first use (PEP 562): the modules above import neither apsw nor
# sqlite-vec, so `edge-embed query` answered by a running server, which only renders
# records, starts without them.
_SQLITE_SIDE = {
    "Store": "edge_embed.store.core",
    "CompactPolicy": "edge_embed.store.maintenance",
    "CompactResult": "edge_embed.store.maintenance",
    "SpaceUsage": "edge_embed.store.maintenance",
    "VectorSpace": "edge_embed.store.maintenance",
    "SCHEMA_VERSION": "edge_embed.store.schema",
    "sqlite_vec_version": "edge_embed.store.schema",
}

if TYPE_CHECKING:  # what type checkers and editors see; at run time __getattr__ imports them
    from edge_embed.store.core import Store
    from edge_embed.store.maintenance import CompactPolicy, CompactResult, SpaceUsage, VectorSpace
    from edge_embed.store.schema import SCHEMA_VERSION, sqlite_vec_version


def __getattr__(name: str) -> object:
    module = _SQLITE_SIDE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # once: later lookups are ordinary attribute reads
    return value


__all__ = [
    "MAX_KNN_K",
    "MAX_QUERY_TERMS",
    "ChunkChanges",
    "CompactPolicy",
    "CompactResult",
    "ChunkRecord",
    "FileRecord",
    "FileState",
    "IndexSettings",
    "KeywordTerms",
    "NewChunk",
    "RootInfo",
    "SCHEMA_VERSION",
    "SpaceUsage",
    "VectorSpace",
    "Store",
    "as_stored",
    "fts5_phrases",
    "fts5_query",
    "keyword_terms",
    "sqlite_vec_version",
    "under_prefix",
]
