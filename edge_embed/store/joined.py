"""``Store``: the store's parts joined into the one class callers open.

It lives apart from the package's ``__init__`` so that importing the records (``ChunkRecord``,
``MAX_KNN_K``...) does not load apsw and sqlite-vec: `edge-embed query` answered by a running
server renders records and never opens SQLite.
"""

from __future__ import annotations

from edge_embed.store.maintenance import StoreMaintenance
from edge_embed.store.retrieval import StoreRetrieval
from edge_embed.store.sqlite_errors import translating_errors
from edge_embed.store.writes import StoreWrites


@translating_errors  # SQLite's failures leave as one-line EdgeEmbedErrors (sqlite_errors)
class Store(StoreWrites, StoreRetrieval, StoreMaintenance):
    """One open index file. Not thread-safe: one Store per thread or process."""
