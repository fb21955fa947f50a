"""`index --rebuild` builds beside the old index: a stop or a failure leaves it whole and queryable."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from edge_embed.errors import EdgeEmbedError
from edge_embed.indexer import IndexOptions, Indexer, NoProgress
from edge_embed.rebuild import rebuild_index
from edge_embed.runtime.loader import prepare_model
from edge_embed.runtime.plan import RuntimeSettings
from edge_embed.store import Store
from edge_embed.store.files import Files


@pytest.fixture
def handle(tiny_model):
    model = prepare_model(str(tiny_model.path), RuntimeSettings(force_cpu=True, ctx=512))
    yield model
    model.close()


@pytest.fixture
def notes(tmp_path) -> Path:
    root = tmp_path / "notes"
    root.mkdir()
    for i in range(6):
        (root / f"note-{i}.md").write_text(f"# Note {i}\n\nThe garden note number {i} talks about keys and tomatoes.\n")
    return root


def snapshot(db: Path) -> tuple:
    with Store.open(db, create=False) as store:
        rows = store._conn.execute("SELECT f.relpath, c.seq, c.text_hash FROM chunks c JOIN files f ON f.id = c.file_id")
        return store.meta.settings(), sorted(map(tuple, rows)), store.maintenance.stats()["vectors"]


@pytest.fixture
def index(tmp_path, notes, handle) -> Path:
    db = tmp_path / "i.db"
    with Store.open(db) as store:
        Indexer(store, handle, IndexOptions(chunk_tokens=64, overlap=4)).run([notes])
    return db


def partial_files(db: Path) -> list[str]:
    return [path.name for path in db.parent.iterdir() if ".rebuild-" in path.name]


class AfterFirstFile(NoProgress):
    """Runs ``action`` once, when the rebuild has written its first file."""

    def __init__(self, action) -> None:
        self.action = action
        self.done = False

    def file_done(self, relpath: str, size: int) -> None:
        if not self.done:
            self.done = True
            self.action()


def test_a_stop_during_a_rebuild_leaves_the_old_index(index, handle):
    before = snapshot(index)
    stop_event = threading.Event()
    summary = rebuild_index(index, handle, IndexOptions(dims=32), progress=AfterFirstFile(stop_event.set), stop=stop_event)
    assert summary.interrupted and summary.rebuilt and summary.indexed >= 1
    assert snapshot(index) == before
    assert partial_files(index) == []


def test_a_query_during_a_rebuild_answers_from_the_old_index(index, handle):
    before = snapshot(index)
    answers = []

    def query_the_old_index() -> None:
        assert partial_files(index), "the rebuild writes beside the index"
        with Store.open(index, create=False) as store:
            assert (store.meta.settings(), store.maintenance.stats()["vectors"]) == (before[0], before[2])
            vector = np.ones(store.meta.settings().dims, dtype=np.float32)
            answers.append((store.vectors.vector_search(vector / np.linalg.norm(vector), 3), store.keywords.keyword_search("garden", 3)))

    summary = rebuild_index(index, handle, IndexOptions(dims=32), progress=AfterFirstFile(query_the_old_index))
    assert not summary.interrupted
    assert len(answers) == 1 and all(len(hits) == 3 for hits in answers[0])
    settings, chunks, vectors = snapshot(index)
    assert settings.dims == 32 and (chunks, vectors) == (before[1], before[2])
    assert partial_files(index) == []


def test_a_failing_rebuild_leaves_the_old_index_and_no_partial_file(index, handle, notes, monkeypatch):
    before = snapshot(index)

    def disk_full(*args, **kwargs):
        raise EdgeEmbedError("the disk is full")

    monkeypatch.setattr(Files, "write_file", disk_full)
    with pytest.raises(EdgeEmbedError, match="disk is full"):
        rebuild_index(index, handle, IndexOptions())
    assert snapshot(index) == before
    assert partial_files(index) == []


def test_a_rebuild_refuses_a_folder_of_the_index_that_is_gone(index, handle, notes):
    before = snapshot(index)
    notes.rename(notes.with_name("moved"))
    with pytest.raises(EdgeEmbedError, match=f"remove {notes.resolve()} from the index"):
        rebuild_index(index, handle, IndexOptions())
    assert snapshot(index) == before


def test_a_rebuild_refuses_an_indexed_folder_that_is_empty_now(index, notes, handle) -> None:
    """An unmounted share looks empty: a rebuild must not replace its files with nothing."""
    before = snapshot(index)
    for note in notes.iterdir():
        note.unlink()
    with pytest.raises(EdgeEmbedError, match="is empty"):
        rebuild_index(index, handle, IndexOptions())
    assert snapshot(index) == before


def test_a_rebuild_refuses_include_and_exclude(index, notes, handle) -> None:
    """--include/--exclude keep what they leave out; a rebuild would silently drop it."""
    before = snapshot(index)
    with pytest.raises(EdgeEmbedError, match="without include or exclude"):
        rebuild_index(index, handle, IndexOptions(include=("note-1.md",)))
    assert snapshot(index) == before
