"""The store's one error boundary: no apsw error leaves ``Store``, any of its parts or a
``VectorRanking`` (issue 16 item 5: the old translation wrapped ``Store``'s public names
only, so whatever reached SQLite outside them, a ranking's deepening or the body of a
``with store.writer_lock()``, let a raw apsw traceback through)."""

from __future__ import annotations

import inspect
from pathlib import Path

import apsw
import numpy as np
import pytest

from edge_embed.errors import IndexChanged
from edge_embed.store import FileRecord, IndexSettings, Store
from edge_embed.store import core as core_module
from edge_embed.store.part import Part
from edge_embed.store.sqlite_errors import TranslatesErrors, translates_errors
from edge_embed.store.vectors import VectorRanking

SETTINGS = IndexSettings("tiny", "/m.gguf", 1, "h", 8, 64, 0)
VANISHED = "no such table: chunks"  # what a rebuild swapping the tables under a reader looks like


class BrokenConnection:
    """An apsw connection whose every use fails as if the tables had gone."""

    in_transaction = False

    def __getattr__(self, name: str):
        def fail(*args: object, **kwargs: object) -> None:
            raise apsw.SQLError(f"SQLError: {VANISHED}")

        return fail

    def __enter__(self) -> None:
        raise apsw.SQLError(f"SQLError: {VANISHED}")

    def __exit__(self, *exc_info: object) -> bool:
        return False


def public_methods(obj: object) -> dict[str, object]:
    """The public methods of ``obj``'s class (inherited ones too), by name."""
    return {
        name: member
        for name, member in inspect.getmembers(type(obj))
        if not name.startswith("_") and (inspect.isfunction(member) or inspect.ismethod(member))
    }


def parts_of(store: Store) -> dict[str, Part]:
    """Every part a Store exposes: whatever of its attributes is a ``Part``."""
    return {name: value for name, value in vars(store).items() if isinstance(value, Part)}


def calls(tmp_path: Path, store: Store, other: Store) -> dict[str, dict[str, object]]:
    """One call of every public method of the store, its parts and a ranking, by owner.

    A method missing here fails ``test_every_public_method_is_called_through_a_broken_connection``,
    so a new method cannot escape the check.
    """
    vector = np.ones(SETTINGS.dims, dtype=np.float32) / np.sqrt(SETTINGS.dims)
    ranking = VectorRanking(store._conn, store.path, vector.tobytes(), None, True, 10)
    enter = lambda manager: manager.__enter__()  # noqa: E731 - a context manager fails on entry
    return {
        "store": {
            "open": lambda: Store.open(tmp_path / "other-broken.db"),
            "close": store.close,
            "schema_version": store.schema_version,
            "pending_migrations": store.pending_migrations,
            "upgrade_note": store.upgrade_note,
            "transaction": lambda: enter(store.transaction()),
            "writer_lock": lambda: enter(store.writer_lock()),
        },
        "meta": {
            "settings": store.meta.settings,
            "required_settings": store.meta.required_settings,
            "init_settings": lambda: store.meta.init_settings(SETTINGS),
            "check_settings": lambda: store.meta.check_settings(SETTINGS),
            "set_instruction": lambda: store.meta.set_instruction("task"),
            "set_model_file": lambda: store.meta.set_model_file("tiny", "/m.gguf", 1),
            "last_write_at": store.meta.last_write_at,
            "count_timeout": lambda: store.meta.count_timeout("hash"),
            "forget_timeouts": lambda: store.meta.forget_timeouts("hash"),
        },
        "files": {
            "add_root": lambda: store.files.add_root(tmp_path),
            "root_paths": store.files.root_paths,
            "roots": store.files.roots,
            "mark_indexed": lambda: store.files.mark_indexed(1),
            "remove_root": lambda: store.files.remove_root(tmp_path),
            "file_states": lambda: store.files.file_states(1),
            "has_file": lambda: store.files.has_file(str(tmp_path / "a.md")),
            "matching_files": lambda: store.files.matching_files([str(tmp_path)], []),
            "touch_file": lambda: store.files.touch_file(1, 1, 1),
            "write_file": lambda: store.files.write_file(FileRecord(1, "a.md", str(tmp_path / "a.md"), 1, 1, "hash"), []),
            "delete_file": lambda: store.files.delete_file(1),
            "chunk_count": store.files.chunk_count,
            "chunk_files": lambda: store.files.chunk_files([1]),
            "chunks_by_id": lambda: store.files.chunks_by_id([1]),
        },
        "vectors": {
            "vector_search": lambda: store.vectors.vector_search(vector, 5),
            "vector_ranking": lambda: store.vectors.vector_ranking(vector),
            "vector_path": store.vectors.vector_path,
            "vectors_for_hashes": lambda: store.vectors.vectors_for_hashes(["hash"]),
        },
        "keywords": {
            "keyword_search": lambda: store.keywords.keyword_search("walrus", 5),
            "keyword_ceiling": lambda: store.keywords.keyword_ceiling("walrus"),
        },
        "maintenance": {
            "stats": store.maintenance.stats,
            "space_usage": store.maintenance.space_usage,
            "compact": store.maintenance.compact,
            "page_size": store.maintenance.page_size,
            "replace_with": lambda: store.maintenance.replace_with(other.maintenance),
            "checkpoint": store.maintenance.checkpoint,
            "integrity_check": store.maintenance.integrity_check,
        },
        "ranking": {"top": lambda: ranking.top(5)},
    }


@pytest.fixture
def broken(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A Store (and a second one to copy from) over connections that always fail."""
    monkeypatch.setattr(core_module, "connect", lambda *args, **kwargs: BrokenConnection())
    return Store(BrokenConnection(), tmp_path / "broken.db"), Store(BrokenConnection(), tmp_path / "source.db")


def test_the_store_and_every_part_and_ranking_are_classes_of_the_boundary(tmp_path: Path) -> None:
    with Store.open(tmp_path / "index.db") as store:
        store.meta.init_settings(SETTINGS)
        ranking = store.vectors.vector_ranking(np.ones(8, dtype=np.float32) / np.sqrt(8))
        holders = {"store": store, **parts_of(store), "ranking": ranking}
        assert set(parts_of(store)) == {"meta", "files", "vectors", "keywords", "maintenance"}
        for name, holder in holders.items():
            assert isinstance(holder, TranslatesErrors), name
            for method_name, method in public_methods(holder).items():
                assert translates_errors(method), f"{name}.{method_name} is outside the error boundary"


def test_every_public_method_is_called_through_a_broken_connection(tmp_path: Path, broken) -> None:
    """Each public method, reaching SQLite through whatever private helper, module function
    or sibling part, fails with the library's one-line error, never an apsw one."""
    store, other = broken
    table = calls(tmp_path, store, other)
    holders = {"store": store, **parts_of(store), "ranking": VectorRanking(store._conn, store.path, b"", None, True, 1)}
    for name, holder in holders.items():
        assert set(table[name]) == set(public_methods(holder)), f"calls() must call every public method of {name}"
    for name, methods in table.items():
        for method_name, call in methods.items():
            with pytest.raises(IndexChanged, match="was rebuilt while this command read it") as raised:
                call()
            assert isinstance(raised.value.__cause__, apsw.SQLError), f"{name}.{method_name}"


def test_a_private_helper_failing_inside_a_part_is_the_library_error(tmp_path: Path, monkeypatch) -> None:
    """A private path (``Files._replace_chunks`` reaching ``rows.delete_chunk_ids``) raising
    apsw.SQLError comes out of ``files.write_file`` as IndexChanged, the write rolled back."""
    from edge_embed.store import files as files_module

    def vanished(*args: object) -> None:
        raise apsw.SQLError(f"SQLError: {VANISHED}")

    with Store.open(tmp_path / "index.db") as store:
        store.meta.init_settings(SETTINGS)
        root_id = store.files.add_root(tmp_path)
        monkeypatch.setattr(files_module, "delete_chunk_ids", vanished)
        with pytest.raises(IndexChanged):
            store.files.write_file(FileRecord(root_id, "a.md", str(tmp_path / "a.md"), 1, 1, "hash"), [])
        assert store.files.file_states(root_id) == {}  # rolled back


def test_sqlite_failing_inside_a_writer_lock_is_the_library_error(tmp_path: Path) -> None:
    """Whatever reads the index inside ``with store.writer_lock():`` is inside the boundary:
    before, only the call that made the context manager was, and an apsw error raised while
    it was held left as a raw traceback."""
    with Store.open(tmp_path / "index.db") as store:
        with pytest.raises(IndexChanged, match="was rebuilt"), store.writer_lock():
            store._conn.execute("SELECT * FROM no_such_table")  # noqa: SLF001 - any SQL failing under the lock
