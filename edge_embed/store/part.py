"""What every part of an open ``Store`` shares: the store's connection, its path, a few reads.

A part (``store.meta``, ``store.files``, ``store.vectors``, ``store.keywords``,
``store.maintenance``) is a small class over the ONE connection its ``Store`` owns; parts
never call each other's private methods, and their public methods translate SQLite's errors
(``TranslatesErrors``), so no apsw error leaves any of them.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import apsw

from edge_embed.store.schema import table_exists
from edge_embed.store.sqlite_errors import TranslatesErrors


@contextmanager
def transaction(conn: apsw.Connection) -> Iterator[None]:
    """A write transaction; nested ones become savepoints of the outer one.

    ``BEGIN IMMEDIATE`` takes the write lock up front, so a second writer waits for the
    busy timeout instead of failing half-way when its read turns into a write.
    """
    if conn.in_transaction:
        with conn:
            yield
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


class Part(TranslatesErrors):
    """One concern of an open index, reading and writing through its store's connection."""

    def __init__(self, conn: apsw.Connection, path: Path) -> None:
        self._conn = conn
        self.path = path

    def _scalar(self, sql: str, params: Sequence[object] = ()) -> object:
        rows = self._conn.execute(sql, params).fetchall()
        return rows[0][0] if rows else None

    def _has_table(self, name: str) -> bool:
        return table_exists(self._conn, name)

    def _count(self, table: str) -> int:
        """Rows of ``table``; 0 for a table this index does not have (yet)."""
        return int(self._scalar(f"SELECT count(*) FROM {table}")) if self._has_table(table) else 0
