"""Searches through ``Index`` keep one read connection per thread (issue 16 item 5): before,
every search, status and settings read opened a new Store (sqlite-vec loaded, WAL set, the
schema read), and the server did that on every request."""

from __future__ import annotations

import gc
import hashlib
import os
import threading
from pathlib import Path

import apsw
import numpy as np
import pytest

from edge_embed.api import Index
from edge_embed.errors import EdgeEmbedError, IndexChanged
from edge_embed.search import SearchOptions
from edge_embed.store import FileRecord, IndexSettings, NewChunk, Store
from edge_embed.store.keyword_search import Keywords

DIMS = 8
KEYWORD = SearchOptions(mode="keyword", k=5)


def build(path: Path, root: Path, word: str) -> None:
    """An index of one file whose one chunk says ``word``."""
    vector = np.ones(DIMS, dtype=np.float32) / np.sqrt(DIMS)
    chunk = NewChunk(0, 1, 1, None, f"a note about the {word}", hashlib.sha256(word.encode()).hexdigest(), vector)
    with Store.open(path) as store:
        store.meta.init_settings(IndexSettings("tiny", "/m.gguf", 1, "h", DIMS, 64, 0))
        root_id = store.files.add_root(root)
        store.files.write_file(FileRecord(root_id, f"{word}.md", str(root / f"{word}.md"), 1, 1, word), [chunk])


def found(index: Index, word: str) -> list[str]:
    return [hit.chunk.relpath for hit in index.search(word, KEYWORD, rerank=False)]


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> list[Store]:
    """Every Store opened from here on."""
    stores: list[Store] = []
    real_open = Store.open.__func__

    def counting_open(cls, *args, **kwargs):
        stores.append(real_open(cls, *args, **kwargs))
        return stores[-1]

    monkeypatch.setattr(Store, "open", classmethod(counting_open))
    return stores


@pytest.fixture
def index_path(tmp_path: Path) -> Path:
    path = tmp_path / "index.db"
    build(path, tmp_path, "walrus")
    return path


def is_closed(store: Store) -> bool:
    try:
        store._conn.execute("SELECT 1")  # noqa: SLF001 - whether the connection itself is closed
    except apsw.ConnectionClosedError:
        return True
    return False


def test_searches_from_one_thread_open_the_store_once(index_path: Path, opened: list[Store]) -> None:
    with Index.open(index_path) as index:
        for _ in range(5):
            assert found(index, "walrus") == ["walrus.md"]
        assert index.store_settings().dims == DIMS
        assert index.status().stats["chunks"] == 1
        assert len(opened) == 1  # before: 7
    assert is_closed(opened[0])  # Index.close closes it


def test_two_threads_get_two_connections(index_path: Path, opened: list[Store]) -> None:
    both_searched = threading.Barrier(2)  # both threads alive at once: two different threads
    results: list[list[str]] = []

    def search_twice(index: Index) -> None:
        results.append(found(index, "walrus"))
        both_searched.wait(timeout=30)
        results.append(found(index, "walrus"))

    with Index.open(index_path) as index:
        threads = [threading.Thread(target=search_twice, args=(index,)) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert results == [["walrus.md"]] * 4
        assert len(opened) == 2 and opened[0] is not opened[1]


def test_a_thread_that_ends_closes_its_connection(index_path: Path, opened: list[Store]) -> None:
    with Index.open(index_path) as index:
        thread = threading.Thread(target=found, args=(index, "walrus"))
        thread.start()
        thread.join()
        gc.collect()
        assert len(opened) == 1 and is_closed(opened[0])  # the server's pool retires idle threads


def test_after_a_rebuild_the_next_search_sees_the_new_index(tmp_path: Path, index_path: Path, opened: list[Store]) -> None:
    """A rebuild copies the new index into the file (SQLite's backup API): the kept
    connection reads the new content; a file deleted and made again is reopened."""
    with Index.open(index_path) as index:
        assert found(index, "walrus") == ["walrus.md"]
        build(tmp_path / "rebuilt.db", tmp_path, "narwhal")
        with Store.open(index_path) as current, Store.open(tmp_path / "rebuilt.db") as fresh:
            current.maintenance.replace_with(fresh.maintenance)
        reads = len(opened)
        assert found(index, "narwhal") == ["narwhal.md"] and found(index, "walrus") == []
        assert len(opened) == reads  # the same connection: the swap is in the same file

        for suffix in ("", "-wal", "-shm"):
            Path(f"{index_path}{suffix}").unlink(missing_ok=True)
        build(index_path, tmp_path, "octopus")  # another file at the same path (another inode)
        assert found(index, "octopus") == ["octopus.md"]
        assert len(opened) == reads + 2  # the build's own Store, and the search's new one
        assert is_closed(opened[0])


def test_an_index_error_drops_the_connection(index_path: Path, opened: list[Store], monkeypatch) -> None:
    """A read that fails as the index's own error (damaged, rebuilt under it) is not retried
    on the same connection: the next search opens a new one."""
    real_search = Keywords.keyword_search
    failures = [IndexChanged("the index was rebuilt while this command read it", str(index_path), "gone")]

    def fails_once(self, *args, **kwargs):
        if failures:
            raise failures.pop()
        return real_search(self, *args, **kwargs)

    monkeypatch.setattr(Keywords, "keyword_search", fails_once)
    with Index.open(index_path) as index:
        with pytest.raises(IndexChanged):
            found(index, "walrus")
        assert is_closed(opened[0])
        assert found(index, "walrus") == ["walrus.md"]
        assert len(opened) == 2


def test_an_index_removed_under_a_kept_connection_is_reported(index_path: Path) -> None:
    with Index.open(index_path) as index:
        assert found(index, "walrus") == ["walrus.md"]
        os.unlink(index_path)
        with pytest.raises(EdgeEmbedError, match="no index at"):
            found(index, "walrus")
