"""One read connection per thread and index file, kept open between searches.

Opening a Store loads sqlite-vec, sets WAL and reads the schema: the server paid that on
every request (and a CLI search on every call). A thread keeps its Store instead, since a
Store is not thread-safe but each thread of the server's pool can own one. It is reopened
when the file at the path is another one (deleted and created again, or renamed over:
another inode), or when a read through it failed as the index's own error (a damaged or
rebuilt file); a rebuild's swap (``maintenance.replace_with``, SQLite's backup API into
the same file) needs neither, as SQLite re-reads a file another connection changed.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from edge_embed.errors import IndexFileError

if TYPE_CHECKING:
    from edge_embed.store.core import Store

FileIdentity = tuple[int, int]  # (device, inode)


def _identity(path: Path) -> FileIdentity | None:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_dev, stat.st_ino


class ThreadReaders:
    """Each thread's read-only Store of each index path (opened ``reading``: an index that
    cannot be written here is opened read-only).

    Creating one loads nothing (the Store, apsw and sqlite-vec load on the first read), so
    a façade holding it stays cheap to make. A thread's Stores are closed when the thread
    ends (the server's thread pool retires idle threads), the rest by ``close()``.
    """

    def __init__(self) -> None:
        self._local = threading.local()  # .held: {path: (Store, FileIdentity | None)}, this thread's
        self._open = _OpenStores()

    @contextmanager
    def reading(self, path: Path) -> Iterator[Store]:
        """This thread's Store of ``path``; one that failed with an index error is closed, not reused."""
        store = self._current(path)
        try:
            yield store
        except IndexFileError:
            self._held().pop(path, None)
            self._open.release([store])
            raise

    def close(self) -> None:
        """Close every thread's Store (call it when no search runs); the next read reopens."""
        self._open.close()

    def _held(self) -> dict[Path, tuple[Store, FileIdentity | None]]:
        """This thread's Stores by path, released by the registry when the thread ends."""
        held = getattr(self._local, "held", None)
        if held is None:
            held = self._local.held = {}
            self._local.end = end = _ThreadEnd()  # dropped with the thread's locals
            weakref.finalize(end, self._open.release_held, held)
        return held

    def _current(self, path: Path) -> Store:
        from edge_embed.store.core import Store  # apsw and sqlite-vec: on the first read only

        held = self._held()
        identity = _identity(path)
        store, opened_as = held.get(path, (None, None))
        if store is not None and store in self._open and identity == opened_as:
            return store
        if store is not None:
            self._open.release([store])
        store = Store.open(path, create=False, reading=True)
        held[path] = (store, identity)
        self._open.add(store)
        return store


class _ThreadEnd:
    """A thread-local object whose collection means its thread has ended."""


class _OpenStores:
    """Every thread's open Stores: what ``close()`` and the end of a thread close."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stores: set[Store] = set()

    def __contains__(self, store: Store) -> bool:
        return store in self._stores

    def add(self, store: Store) -> None:
        with self._lock:
            self._stores.add(store)

    def release(self, stores: Iterable[Store]) -> None:
        """Close those of ``stores`` still open (each once, whoever asks first)."""
        with self._lock:
            mine = [store for store in stores if store in self._stores]
            self._stores.difference_update(mine)
        for store in mine:
            store.close()

    def release_held(self, held: dict[Path, tuple[Store, FileIdentity | None]]) -> None:
        self.release(store for store, _ in held.values())

    def close(self) -> None:
        with self._lock:
            stores, self._stores = self._stores, set()
        for store in stores:
            store.close()
