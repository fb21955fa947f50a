"""The index file: schema, settings, consistent writes, exact search, filters, CJK, locking."""

from __future__ import annotations

import math

import hashlib
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import apsw
import numpy as np
import pytest

from edge_embed.cli.wording import cli_message
from edge_embed.errors import EdgeEmbedError, IndexMismatch
from edge_embed.store import (
    MAX_KNN_K,
    SCHEMA_VERSION,
    FileRecord,
    IndexSettings,
    NewChunk,
    Store,
    sqlite_vec_version,
)
from edge_embed.store.schema import (
    MIGRATIONS,
    _migration_3_chunk_pages,
    _migration_5_stemmed_words,
    _migration_6_neighbour_chunk_words,
    refill_keyword_rows,
)

DIMS = 16
SETTINGS = IndexSettings(
    model_label="qwen3-embedding-0.6b",
    model_file="/models/Qwen3-Embedding-0.6B-Q8_0.gguf",
    model_size=639_000_000,
    model_hash="a" * 64,
    dims=DIMS,
    chunk_tokens=512,
    overlap=64,
    instruction=None,
)


# ---------------------------------------------------------------------- helpers
def unit_vectors(rng: np.random.Generator, n: int, dims: int = DIMS) -> np.ndarray:
    vectors = rng.standard_normal((n, dims)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def make_chunk(seq: int, text: str, vector: np.ndarray, heading: str | None = None) -> NewChunk:
    digest = hashlib.sha256(text.encode()).hexdigest()
    return NewChunk(seq, seq * 10 + 1, seq * 10 + 9, heading, text, digest, vector)


def write(store: Store, root_id: int, root: Path, relpath: str, texts: list[str], vectors: np.ndarray) -> None:
    chunks = [make_chunk(i, text, vector) for i, (text, vector) in enumerate(zip(texts, vectors))]
    store.files.write_file(FileRecord(root_id, relpath, str(root / relpath), 100, 1, f"hash-of-{relpath}"), chunks)


def raw_counts(path: Path) -> dict[str, int]:
    """Row counts read through a separate plain connection (no sqlite-vec needed for these)."""
    conn = apsw.Connection(str(path))
    try:
        return {
            table: conn.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0]
            for table in ("files", "chunks", "chunks_fts", "chunks_cjk")
        }
    finally:
        conn.close()


@pytest.fixture
def store(tmp_path: Path):
    with Store.open(tmp_path / "index.db") as opened:
        opened.meta.init_settings(SETTINGS)
        yield opened


@pytest.fixture
def root(tmp_path: Path) -> Path:
    folder = tmp_path / "notes"
    folder.mkdir()
    return folder


# ---------------------------------------------------------------------- schema
def schema_objects(path: Path) -> list[tuple[str, str]]:
    conn = apsw.Connection(str(path))
    try:
        return conn.execute("SELECT type, name FROM sqlite_schema ORDER BY name").fetchall()
    finally:
        conn.close()


def test_migrations_create_the_schema_and_reopening_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "index.db"
    with Store.open(path) as store:
        assert store.schema_version() == SCHEMA_VERSION
        store.meta.init_settings(SETTINGS)
        root_id = store.files.add_root(tmp_path)
        write(store, root_id, tmp_path, "a.md", ["alpha"], unit_vectors(np.random.default_rng(0), 1))
    before = schema_objects(path)
    names = {name for _, name in before}
    assert {"meta", "roots", "files", "chunks", "chunks_fts", "chunks_cjk", "chunk_vectors"} <= names
    with Store.open(path, create=False) as store:
        assert store.schema_version() == SCHEMA_VERSION
        assert store.meta.settings() == SETTINGS
        assert store.maintenance.stats()["chunks"] == 1
    assert schema_objects(path) == before


def test_an_index_from_before_pages_migrates_and_keeps_its_vectors(tmp_path: Path) -> None:
    """Migration 3 adds nullable page columns: old chunks keep their rows and vectors
    (nothing is re-embedded), and pages of new chunks are stored and read back."""
    path = tmp_path / "index.db"
    vectors = unit_vectors(np.random.default_rng(1), 2)
    with Store.open(path) as store:
        store.meta.init_settings(SETTINGS)
        root_id = store.files.add_root(tmp_path)
        write(store, root_id, tmp_path, "old.md", ["written before pages existed"], vectors[:1])
    before_pages = MIGRATIONS.index(_migration_3_chunk_pages)  # the version an older edge-embed left
    conn = apsw.Connection(str(path))  # turn it into such a file
    conn.execute("ALTER TABLE chunks DROP COLUMN page_start; ALTER TABLE chunks DROP COLUMN page_end; "
                 f"DROP TABLE chunks_stemmed; PRAGMA user_version = {before_pages}")
    conn.close()
    with Store.open(path, create=False) as store, store.writer_lock():  # a writer migrates
        assert store.schema_version() == SCHEMA_VERSION
        old = store.vectors.vector_search(vectors[0], k=1)[0]
        assert old[1] == pytest.approx(0.0, abs=1e-5)  # the same vector, found again (L2 distance)
        paged = replace(make_chunk(0, "on page seven", vectors[1]), page_start=7, page_end=7)
        store.files.write_file(FileRecord(store.files.add_root(tmp_path), "manual.pdf", str(tmp_path / "manual.pdf"), 10, 1, "h"), [paged])
        records = store.files.chunks_by_id([old[0], store.vectors.vector_search(vectors[1], k=1)[0][0]])
    assert sorted((r.relpath, r.page_start, r.page_end) for r in records.values()) == [
        ("manual.pdf", 7, 7),
        ("old.md", None, None),
    ]


def test_keyword_search_finds_other_word_forms_and_prefers_the_exact_one(tmp_path: Path) -> None:
    with Store.open(tmp_path / "index.db") as store:
        store.meta.init_settings(SETTINGS)
        root_id = store.files.add_root(tmp_path)
        texts = ["the files were indexed overnight", "indexing the files takes a night", "nothing related here"]
        for i, (text, vector) in enumerate(zip(texts, unit_vectors(np.random.default_rng(3), 3))):
            write(store, root_id, tmp_path, f"note{i}.md", [text], vector[None])  # one file each: no neighbours
        found = store.keywords.keyword_search("indexed", 10)
        by_text = {record.text: score for record, score in
                   ((store.files.chunks_by_id([cid])[cid], score) for cid, score in found)}
    assert set(by_text) == set(texts[:2]), "the stem finds 'indexing' for 'indexed'"
    assert by_text[texts[0]] > by_text[texts[1]], "the word as typed scores in both tables"


def test_an_index_from_before_stemming_migrates_without_re_embedding(tmp_path: Path) -> None:
    """Migration 5 fills chunks_stemmed from the stored chunks; vectors and ids stay."""
    path = tmp_path / "index.db"
    vectors = unit_vectors(np.random.default_rng(2), 2)
    with Store.open(path) as store:
        store.meta.init_settings(SETTINGS)
        root_id = store.files.add_root(tmp_path)
        write(store, root_id, tmp_path, "old.md", ["the walrus was indexed", "unrelated text"], vectors)
        before = store.keywords.keyword_search("indexing walrus", 10)
    conn = apsw.Connection(str(path))  # the file an edge-embed before stemming left
    conn.execute(f"DROP TABLE chunks_stemmed; PRAGMA user_version = {MIGRATIONS.index(_migration_5_stemmed_words)}")
    conn.close()
    assert "chunks_stemmed" not in raw_counts_tables(path)
    with Store.open(path, create=False) as store, store.writer_lock():  # a writer migrates
        assert store.schema_version() == SCHEMA_VERSION
        assert store.keywords.keyword_search("indexing walrus", 10) == before
        assert store.vectors.vector_search(vectors[1], k=1)[0][1] == pytest.approx(0.0, abs=1e-5)
        assert store.maintenance.integrity_check() == "ok"


def raw_counts_tables(path: Path) -> set[str]:
    conn = apsw.Connection(str(path))
    try:
        return {row[0] for row in conn.execute("SELECT name FROM sqlite_schema WHERE type = 'table'")}
    finally:
        conn.close()


def test_open_refuses_what_is_not_an_index(tmp_path: Path) -> None:
    text_file = tmp_path / "notes.txt"
    text_file.write_text("just some text, long enough to fill a header page " * 20)
    with pytest.raises(EdgeEmbedError, match="not an SQLite database"):
        Store.open(text_file)

    foreign = tmp_path / "other.sqlite"
    conn = apsw.Connection(str(foreign))
    conn.execute("CREATE TABLE people(name)")
    conn.close()
    with pytest.raises(EdgeEmbedError, match="not an edge-embed index"):
        Store.open(foreign)

    with pytest.raises(EdgeEmbedError, match="no index at"):
        Store.open(tmp_path / "missing.db", create=False)
    assert not (tmp_path / "missing.db").exists()


@pytest.mark.parametrize("leftover", ["zero-bytes", "wal-header-only"])
def test_an_empty_file_left_by_a_killed_first_run_is_initialised(tmp_path: Path, leftover: str) -> None:
    """kill -9 between creating the file and committing the schema leaves one of these."""
    path = tmp_path / "index.db"
    if leftover == "zero-bytes":
        path.write_bytes(b"")
    else:
        conn = apsw.Connection(str(path))
        conn.execute("PRAGMA journal_mode=WAL").fetchall()
        conn.close()
        assert path.stat().st_size > 0
    with Store.open(path, create=False) as store:
        assert store.schema_version() == SCHEMA_VERSION
        assert store.meta.settings() is None
    with Store.open(path) as store:
        store.meta.init_settings(SETTINGS)
        assert store.meta.settings() == SETTINGS


def test_open_refuses_an_index_from_a_newer_version(tmp_path: Path) -> None:
    path = tmp_path / "index.db"
    Store.open(path).close()
    conn = apsw.Connection(str(path))
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(EdgeEmbedError, match="newer edge-embed"):
        Store.open(path)


def test_sqlite_vec_version_is_reported() -> None:
    assert sqlite_vec_version().startswith("v0.1.")


# ---------------------------------------------------------------------- settings
def test_settings_are_stored_once_and_the_instruction_can_change(store: Store) -> None:
    assert store.meta.settings() == SETTINGS
    store.meta.init_settings(SETTINGS)  # a second index run: no change, no error
    store.meta.set_instruction("Given a question about code, retrieve the code")
    assert store.meta.settings() == replace(SETTINGS, instruction="Given a question about code, retrieve the code")
    store.meta.set_instruction(None)
    assert store.meta.settings() == SETTINGS


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"model_label": "qwen3-embedding-4b", "model_hash": "b" * 64}, "(the model differ)"),
        ({"model_hash": "b" * 64, "model_file": "/m/Qwen3-Embedding-0.6B-f16.gguf"}, "the model file (Qwen3-Embedding-0.6B-Q8_0.gguf vs Qwen3-Embedding-0.6B-f16.gguf)"),
        ({"dims": 256}, "(dims differ)"),
        ({"chunk_tokens": 256}, "(chunk size differ)"),
        ({"overlap": 0}, "(overlap differ)"),
        ({"dims": 256, "chunk_tokens": 1024}, "(dims, chunk size differ)"),
    ],
)
def test_settings_mismatch_names_what_differs(store: Store, change: dict, named: str) -> None:
    wanted = replace(SETTINGS, **change)
    with pytest.raises(IndexMismatch) as excinfo:
        store.meta.check_settings(wanted)
    message = str(excinfo.value)
    assert named in message
    assert SETTINGS.describe() in message and wanted.describe() in message
    assert "--" not in message  # the library's words; the CLI's name the flags
    assert "--rebuild" in cli_message(excinfo.value) and "--db" in cli_message(excinfo.value)
    with pytest.raises(IndexMismatch):
        store.meta.init_settings(wanted)


def test_settings_that_do_not_change_vectors_are_not_a_mismatch(store: Store) -> None:
    moved = replace(SETTINGS, model_file="/elsewhere/model.gguf", model_label="renamed", instruction="task")
    store.meta.check_settings(moved)


def test_replace_with_swaps_in_another_index_under_an_open_reader(tmp_path: Path, root: Path) -> None:
    """What --rebuild does at its end: readers see the old index, then the whole new one."""
    rng = np.random.default_rng(1)
    with Store.open(tmp_path / "index.db") as current, Store.open(tmp_path / "index.db", create=False) as reader:
        current.meta.init_settings(SETTINGS)
        write(current, current.files.add_root(root), root, "a.md", ["alpha"], unit_vectors(rng, 1))
        assert reader.maintenance.stats()["chunks"] == 1
        with Store.open(tmp_path / "new.db", page_size=current.maintenance.page_size()) as fresh:
            fresh.meta.init_settings(replace(SETTINGS, dims=8))
            root_id = fresh.files.add_root(root)
            write(fresh, root_id, root, "a.md", ["alpha", "beta"], unit_vectors(rng, 2, dims=8))
            write(fresh, root_id, root, "b.md", ["gamma"], unit_vectors(rng, 1, dims=8))
            current.maintenance.replace_with(fresh.maintenance)
        assert reader.meta.settings() == replace(SETTINGS, dims=8)
        assert reader.maintenance.stats()["chunks"] == reader.maintenance.stats()["vectors"] == 3
        assert len(reader.vectors.vector_search(unit_vectors(rng, 1, dims=8)[0], 5)) == 3
        assert reader.keywords.keyword_search("gamma", 5)
        assert current.maintenance.integrity_check() == "ok"
        assert current._conn.execute("PRAGMA journal_mode").fetchall()[0][0] == "wal"
        with Store.open(tmp_path / "other.db", page_size=2 * current.maintenance.page_size()) as odd:
            with pytest.raises(ValueError, match="page size"):
                current.maintenance.replace_with(odd.maintenance)


# ---------------------------------------------------------------------- writes
def assert_consistent(store: Store, chunks: int, cjk_chunks: int, files: int) -> None:
    counts = raw_counts(store.path)
    assert counts == {"files": files, "chunks": chunks, "chunks_fts": chunks, "chunks_cjk": cjk_chunks}
    assert store.maintenance.stats()["vectors"] == chunks
    assert store.maintenance.integrity_check() == "ok"


def test_write_replace_and_delete_keep_vectors_and_both_fts_tables_in_step(store: Store, root: Path) -> None:
    rng = np.random.default_rng(3)
    root_id = store.files.add_root(root)
    write(store, root_id, root, "a.md", ["old apple text", "旧的苹果文本", "old banana"], unit_vectors(rng, 3))
    write(store, root_id, root, "b.md", ["cherry notes", "桜の季節"], unit_vectors(rng, 2))
    assert_consistent(store, chunks=5, cjk_chunks=5, files=2)  # a chunk beside a CJK one holds its words too
    old_ids = {chunk_id for chunk_id, _ in store.vectors.vector_search(unit_vectors(rng, 1)[0], 10)}

    write(store, root_id, root, "a.md", ["new apricot text", "新的杏子文本"], unit_vectors(rng, 2))
    assert_consistent(store, chunks=4, cjk_chunks=4, files=2)
    assert store.keywords.keyword_search("apple banana", 10) == []
    assert store.keywords.keyword_search("旧的苹果", 10) == []
    assert len(store.keywords.keyword_search("apricot", 10)) == 2  # its chunk and its neighbour
    assert len(store.keywords.keyword_search("杏子文本", 10)) == 2
    live = {chunk_id for chunk_id, _ in store.vectors.vector_search(unit_vectors(rng, 1)[0], 10)}
    assert len(live) == 4 and set(store.files.chunks_by_id(live)) == live
    assert len(old_ids - live) == 3  # a.md's three old chunks are gone from vec0 too

    store.files.delete_file(store.files.file_states(root_id)["b.md"].id)
    assert_consistent(store, chunks=2, cjk_chunks=2, files=1)
    assert store.keywords.keyword_search("cherry", 10) == []

    assert store.files.remove_root(root) is True
    assert store.files.remove_root(root) is False
    assert_consistent(store, chunks=0, cjk_chunks=0, files=0)
    assert store.files.roots() == []


def write_sections(store: Store, root_id: int, root: Path, chunks: list[tuple[str, str]], rng) -> list[int]:
    """a.md with these (heading, text) chunks; their ids in order."""
    vectors = unit_vectors(rng, len(chunks))
    records = [make_chunk(i, text, vector, heading) for i, ((heading, text), vector) in enumerate(zip(chunks, vectors))]
    store.files.write_file(FileRecord(root_id, "a.md", str(root / "a.md"), 100, 1, "hash-of-a.md"), records)
    return [row[0] for row in store._conn.execute("SELECT id FROM chunks ORDER BY seq")]  # noqa: SLF001 - the one file


def found(store: Store, words: str) -> list[int]:
    return sorted(chunk_id for chunk_id, _ in store.keywords.keyword_search(words, 10))


def test_a_chunks_keyword_rows_hold_its_neighbours_words_in_its_section(store: Store, root: Path) -> None:
    """Words that one passage says across a chunk boundary are found together: BM25 scores
    a chunk on its text and its neighbours'. Not across a heading."""
    first, second, third = write_sections(
        store, store.files.add_root(root), root,
        [("Fruit", "apple orchard"), ("Fruit", "banana plantation"), ("Berries", "cherry picking")],
        np.random.default_rng(5),
    )
    assert found(store, "banana") == [first, second]
    assert found(store, "apple") == [first, second]
    assert found(store, "cherry") == [third]  # another section: not in the banana chunk's rows
    best, _ = store.keywords.keyword_search("apple banana", 10)[0]
    assert best == first


def test_migration_6_gives_an_old_index_its_neighbours_words(store: Store, root: Path) -> None:
    """An index from before: each chunk's keyword rows hold its own text only. Migration 6
    refills them from the stored chunks, chunk ids and vectors untouched."""
    first, second = write_sections(store, store.files.add_root(root), root, [("", "apple orchard"), ("", "banana plantation")], np.random.default_rng(7))
    with store.transaction():
        refill_keyword_rows(store._conn, lambda chunks: [text for _, text in chunks])  # noqa: SLF001 - the old rows
    assert found(store, "banana") == [second]
    vectors_before = store.maintenance.stats()["vectors"]
    with store.transaction():
        _migration_6_neighbour_chunk_words(store._conn)  # noqa: SLF001
    assert found(store, "banana") == found(store, "apple") == [first, second]
    assert store.maintenance.stats()["vectors"] == vectors_before and store.maintenance.integrity_check() == "ok"


def test_a_kept_chunk_gets_the_words_of_its_new_neighbour(store: Store, root: Path) -> None:
    """The first chunk's text is unchanged (kept in place, not re-embedded), but the chunk
    after it is new: its keyword rows must follow, or a word the file no longer has
    would still find it."""
    rng = np.random.default_rng(6)
    root_id = store.files.add_root(root)
    first, _ = write_sections(store, root_id, root, [("", "apple orchard"), ("", "banana plantation")], rng)
    kept, _ = write_sections(store, root_id, root, [("", "apple orchard"), ("", "cherry picking")], rng)
    assert kept == first
    assert found(store, "banana") == []
    assert first in found(store, "cherry")


def test_write_rejects_a_vector_of_the_wrong_size_without_writing(store: Store, root: Path) -> None:
    root_id = store.files.add_root(root)
    with pytest.raises(ValueError, match="dimensions"):
        write(store, root_id, root, "a.md", ["alpha"], np.ones((1, DIMS + 1), dtype=np.float32))
    assert store.files.file_states(root_id) == {}


def test_file_states_touch_and_roots(store: Store, root: Path) -> None:
    root_id = store.files.add_root(root)
    assert store.files.add_root(root) == root_id
    write(store, root_id, root, "sub/a.md", ["alpha", "beta"], unit_vectors(np.random.default_rng(4), 2))
    state = store.files.file_states(root_id)["sub/a.md"]
    assert (state.size, state.mtime_ns, state.content_hash) == (100, 1, "hash-of-sub/a.md")
    store.files.touch_file(state.id, 120, 99)
    assert store.files.file_states(root_id)["sub/a.md"] == replace(state, size=120, mtime_ns=99)
    [info] = store.files.roots()
    assert (info.path, info.files, info.chunks, info.last_indexed_at) == (str(root.resolve()), 1, 2, None)
    store.files.mark_indexed(root_id)
    assert store.files.roots()[0].last_indexed_at is not None


def test_vectors_for_hashes_finds_stored_vectors_anywhere(store: Store, root: Path) -> None:
    vectors = unit_vectors(np.random.default_rng(5), 3)
    root_id = store.files.add_root(root)
    write(store, root_id, root, "a.md", ["shared text", "only in a"], vectors[:2])
    write(store, root_id, root, "b.md", ["shared text"], vectors[2:])
    shared = hashlib.sha256(b"shared text").hexdigest()
    only_a = hashlib.sha256(b"only in a").hexdigest()
    found = store.vectors.vectors_for_hashes([shared, only_a, "f" * 64])
    assert set(found) == {shared, only_a}
    np.testing.assert_array_equal(found[only_a], vectors[1])
    store.files.delete_file(store.files.file_states(root_id)["a.md"].id)
    found = store.vectors.vectors_for_hashes([shared, only_a])
    assert set(found) == {shared}
    np.testing.assert_array_equal(found[shared], vectors[2])


# ---------------------------------------------------------------------- vector search
def exact_top_k(vectors: np.ndarray, ids: np.ndarray, query: np.ndarray, k: int) -> tuple[list[int], np.ndarray]:
    distances = np.linalg.norm(vectors - query, axis=1)
    order = np.argsort(distances, kind="stable")[:k]
    return ids[order].tolist(), distances[order]


@pytest.fixture
def big_index(store: Store, root: Path):
    """3000 random unit vectors in 100 files: 1 file under keep/, 99 under other/."""
    rng = np.random.default_rng(6)
    vectors = unit_vectors(rng, 3000)
    root_id = store.files.add_root(root)
    for n in range(100):
        relpath = "keep/keep_0.md" if n == 0 else f"other/file_{n}.md"
        block = vectors[n * 30 : (n + 1) * 30]
        with store.transaction():
            write(store, root_id, root, relpath, [f"chunk {n}-{i}" for i in range(30)], block)
    ids = np.array(sorted(store.files.chunks_by_id(range(1, 4000))))
    assert len(ids) == 3000
    return store, vectors, ids, rng


def test_vector_search_equals_numpy_exact_top_k(big_index) -> None:
    store, vectors, ids, rng = big_index
    for query in unit_vectors(rng, 5):
        want_ids, want_distances = exact_top_k(vectors, ids, query, 10)
        got = store.vectors.vector_search(query, 10)
        assert [chunk_id for chunk_id, _ in got] == want_ids
        np.testing.assert_allclose([d for _, d in got], want_distances, rtol=1e-5)


def test_vector_search_beyond_the_knn_limit_uses_an_exact_scan(big_index) -> None:
    store, vectors, ids, rng = big_index
    query = unit_vectors(rng, 1)[0]
    got = store.vectors.vector_search(query, MAX_KNN_K + 1)
    assert sorted(chunk_id for chunk_id, _ in got) == ids.tolist()
    got_distances = np.array([distance for _, distance in got])
    assert np.all(np.diff(got_distances) >= 0)
    exact = np.linalg.norm(vectors - query, axis=1)
    np.testing.assert_allclose(got_distances, exact[np.searchsorted(ids, [chunk_id for chunk_id, _ in got])], rtol=1e-5)


def test_filters_that_exclude_99_percent_still_return_k(big_index, root: Path) -> None:
    store, vectors, ids, rng = big_index
    query = unit_vectors(rng, 1)[0]
    keep = np.arange(30)
    want_ids, want_distances = exact_top_k(vectors[keep], ids[keep], query, 10)
    for filters in (
        {"path_prefixes": [str(root / "keep")]},
        {"globs": ["keep_*.md"]},
        {"globs": ["keep/*"]},
        {"path_prefixes": [str(root)], "globs": ["*keep_0*"]},
    ):
        got = store.vectors.vector_search(query, 10, **filters)
        assert [chunk_id for chunk_id, _ in got] == want_ids, filters
        np.testing.assert_allclose([d for _, d in got], want_distances, rtol=1e-5)
    assert len(store.vectors.vector_search(query, 50, globs=["keep_*.md"])) == 30  # fewer only when fewer exist
    assert store.vectors.vector_search(query, 10, path_prefixes=[str(root / "kee")]) == []  # not a path prefix
    assert store.vectors.vector_search(query, 10, globs=["*.py"]) == []
    assert len(store.vectors.vector_search(query, 10, globs=["file_1.md", "file_2.md"])) == 10


@pytest.mark.parametrize(
    ("globs", "expected"),
    [
        (["docs/*.md"], {"docs/b.md"}),  # '*' stops at '/': not docs/a/c.md
        (["**/*.md"], {"a.md", "docs/b.md", "docs/a/c.md"}),  # top-level files too
        (["*.md"], {"a.md", "docs/b.md", "docs/a/c.md"}),  # no '/': a name at any depth
        (["*.md", "!docs/a/**"], {"a.md", "docs/b.md"}),  # a negation takes back a match
        (["docs/"], {"docs/b.md", "docs/a/c.md", "docs/notes.txt"}),  # a folder: all inside
    ],
)
def test_globs_follow_gitignore_rules_like_include(
    store: Store, root: Path, globs: list[str], expected: set[str]
) -> None:
    root_id = store.files.add_root(root)
    relpaths = ["a.md", "docs/b.md", "docs/a/c.md", "docs/notes.txt", "top.txt"]
    for relpath, vector in zip(relpaths, unit_vectors(np.random.default_rng(12), len(relpaths))):
        write(store, root_id, root, relpath, ["shared walrus text"], vector[None, :])
    hits = store.keywords.keyword_search("walrus", 10, globs=globs)
    assert {record.relpath for record in store.files.chunks_by_id(i for i, _ in hits).values()} == expected


# ---------------------------------------------------------------------- keyword search
CORPUS = [
    ("en/cooking.md", "Pancakes need flour, milk and eggs. Whisk the batter until smooth."),
    ("en/garden.md", "Tomatoes want sun and regular watering in summer."),
    ("en/cafe.md", "The café on the corner serves crème brûlée."),
    ("en/db.md", "SQLite uses write-ahead logging for concurrent readers."),
    ("zh/ml.md", "机器学习是人工智能的一个分支，它让计算机从数据中学习规律。"),
    ("zh/db.md", "数据库索引可以加快查询速度，但是会占用更多的存储空间。"),
    ("zh/weather.md", "今天北京的天气很好，适合出去散步。"),
    ("zh/food.md", "我喜欢吃饺子和面条，特别是在冬天。"),
    ("ja/weather.md", "東京の天気は晴れ、気温は二十度です。"),
    ("ja/train.md", "新幹線で大阪まで二時間半かかります。"),
    ("ja/cat.md", "猫はこたつで丸くなって寝ています。"),
    ("ja/code.md", "Pythonの使い方を説明します。関数とクラスを学びましょう。"),
    ("ja/bread.md", "毎朝パンとコーヒーをいただきます。"),
    ("ko/seoul.md", "어제 서울에서 친구를 만났어요."),
    ("ko/busan.md", "부산은 바다가 아름다운 도시입니다."),
]


@pytest.fixture
def corpus(store: Store, root: Path) -> dict[str, int]:
    """One chunk per file; returns relpath -> chunk id."""
    root_id = store.files.add_root(root)
    vectors = unit_vectors(np.random.default_rng(7), len(CORPUS))
    for (relpath, text), vector in zip(CORPUS, vectors):
        write(store, root_id, root, relpath, [text], vector[None, :])
    records = store.files.chunks_by_id(range(1, 100))
    return {record.relpath: chunk_id for chunk_id, record in records.items()}


def top(store: Store, text: str, **filters) -> list[int]:
    return [chunk_id for chunk_id, _ in store.keywords.keyword_search(text, 5, **filters)]


def test_keyword_search_finds_words_diacritics_and_paths(store: Store, corpus: dict[str, int], root: Path) -> None:
    assert top(store, "flour")[0] == corpus["en/cooking.md"]
    assert top(store, "creme brulee")[0] == corpus["en/cafe.md"]
    assert top(store, "garden")[0] == corpus["en/garden.md"]  # the relpath is indexed too
    assert top(store, "WRITE-AHEAD logging")[0] == corpus["en/db.md"]
    assert top(store, "flour", globs=["zh/*"]) == []
    assert top(store, "sun milk", path_prefixes=[str(root / "en")]) != []
    scores = store.keywords.keyword_search("flour milk eggs sun", 5)
    assert scores[0][0] == corpus["en/cooking.md"] and scores[0][1] > scores[1][1] > 0


@pytest.mark.parametrize(
    ("query", "relpath"),
    [
        ("机器学习", "zh/ml.md"),  # a 4-character run: itself plus its trigrams
        ("数据库索引", "zh/db.md"),
        ("学习", "zh/ml.md"),  # a 2-character Chinese word: below the trigram size
        ("天气", "zh/weather.md"),
        ("饺子", "zh/food.md"),
        ("東京の天気", "ja/weather.md"),
        ("新幹線", "ja/train.md"),
        ("猫", "ja/cat.md"),  # a single kanji
        ("Python 使い方", "ja/code.md"),
        ("Pythonの使い方", "ja/code.md"),
        ("查询 速度", "zh/db.md"),
        ("서울", "ko/seoul.md"),  # Hangul: a 2-syllable word with a particle attached
        ("서울에서", "ko/seoul.md"),
        ("바다", "ko/busan.md"),
        ("요", "ko/seoul.md"),  # one syllable, the last of its run
        ("パン", "ja/bread.md"),  # katakana
        ("コーヒー", "ja/bread.md"),
        ("いただき", "ja/bread.md"),  # hiragana
    ],
)
def test_keyword_search_finds_chinese_and_japanese(store: Store, corpus: dict[str, int], query: str, relpath: str) -> None:
    assert top(store, query)[0] == corpus[relpath]


def test_a_word_in_a_heading_or_file_name_outweighs_more_of_it_in_the_text(store: Store, root: Path) -> None:
    """BM25 column weights text 1, heading 4, path 4: a section titled "Walrus" or a file
    named walrus.md is about walruses more than a text that says it three times."""
    root_id = store.files.add_root(root)
    vectors = unit_vectors(np.random.default_rng(21), 4)
    write(store, root_id, root, "a/text.md", ["walrus walrus walrus seen"], vectors[0:1])
    titled = [make_chunk(0, "seen from the boat", vectors[1], heading="Walrus")]
    store.files.write_file(FileRecord(root_id, "b/titled.md", str(root / "b/titled.md"), 1, 1, "h"), titled)
    write(store, root_id, root, "c/walrus.md", ["seen on the ice"], vectors[2:3])
    write(store, root_id, root, "d/other.md", ["nothing to see here"], vectors[3:4])
    paths = {chunk_id: record.relpath for chunk_id, record in store.files.chunks_by_id(range(1, 10)).items()}
    assert [paths[i] for i in top(store, "walrus")][-1] == "a/text.md"


def test_keyword_ceiling_is_k1_plus_1_times_the_terms_fts5_idf(store: Store, corpus: dict[str, int]) -> None:
    rows = len(CORPUS)
    idf = lambda matching: max(math.log((rows - matching + 0.5) / (matching + 0.5)), 1e-6)  # noqa: E731
    # "flour": 1 chunk; "the": 2 (cooking, cafe: text and "The"); "zebra": none, still counted.
    # Each word is searched as written and stemmed (its stem is itself here): it counts twice.
    assert store.keywords.keyword_ceiling("flour") == pytest.approx(2 * 2.2 * idf(1))
    assert store.keywords.keyword_ceiling("flour the zebra") == pytest.approx(2 * 2.2 * (idf(1) + idf(2) + idf(0)))
    assert store.keywords.keyword_ceiling("  ,;  ") == 0.0


@pytest.mark.parametrize("query", ["flour milk eggs sun the", "数据库索引 查询", "東京の天気", "서울 바다 요", "Python 使い方"])
def test_no_chunk_scores_above_the_keyword_ceiling(store: Store, corpus: dict[str, int], query: str) -> None:
    ceiling = store.keywords.keyword_ceiling(query)
    scores = store.keywords.keyword_search(query, 50)
    assert scores and all(0 < score < ceiling for _, score in scores)


def test_keyword_ceiling_counts_rows_as_fts5_does_after_deletes(store: Store, corpus: dict[str, int], root: Path) -> None:
    before = store.keywords.keyword_ceiling("flour")
    store.files.delete_file(store.files.file_states(store.files.add_root(root))["en/garden.md"].id)
    rows = store.keywords._fts_row_count("chunks_fts")  # what FTS5's bm25() divides by
    # SQLite 3.45's FTS5 (our lowest apsw) keeps a contentless delete in that count; 3.54 takes it out
    assert rows in (len(CORPUS) - 1, len(CORPUS))
    assert store.keywords.keyword_ceiling("flour") == pytest.approx(2 * 2.2 * math.log((rows - 1 + 0.5) / 1.5))  # as written + stemmed
    assert rows == len(CORPUS) or store.keywords.keyword_ceiling("flour") != before


def test_cjk_sentence_without_spaces_matches_on_shared_words(store: Store, corpus: dict[str, int]) -> None:
    assert top(store, "怎样让数据库查询更快")[0] == corpus["zh/db.md"]
    assert top(store, "学习", globs=["ja/*"]) == []


def test_cjk_headings_and_file_names_are_searchable(store: Store, root: Path) -> None:
    root_id = store.files.add_root(root)
    vectors = unit_vectors(np.random.default_rng(13), 3)
    chunks = [make_chunk(0, "Only English text here.", vectors[0], heading="天气预报")]
    store.files.write_file(FileRecord(root_id, "en/forecast.md", str(root / "en/forecast.md"), 1, 1, "h1"), chunks)
    write(store, root_id, root, "笔记/서울.md", ["Plain words, nothing else."], vectors[1:2])
    write(store, root_id, root, "en/other.md", ["More plain words."], vectors[2:3])
    paths = {record.relpath: chunk_id for chunk_id, record in store.files.chunks_by_id(range(1, 10)).items()}
    for query, relpath in (("天气", "en/forecast.md"), ("天气预报", "en/forecast.md"), ("预", "en/forecast.md"),
                           ("笔记", "笔记/서울.md"), ("서울", "笔记/서울.md")):
        assert top(store, query) == [paths[relpath]], query


def chunk_columns_read(store: Store, query: str, **filters) -> set[tuple[str, str]]:
    """The (table, column) pairs SQLite reads to answer ``query``, from its authorizer."""
    reads: set[tuple[str, str]] = set()

    def authorizer(operation: int, table: str | None, column: str | None, *_: object) -> int:
        if operation == apsw.SQLITE_READ:
            reads.add((str(table), str(column)))
        return apsw.SQLITE_OK

    store._conn.authorizer = authorizer  # noqa: SLF001 - the test watches the store's own SQL
    try:
        assert store.keywords.keyword_search(query, 5, **filters), query
    finally:
        store._conn.authorizer = None  # noqa: SLF001
    return reads


@pytest.mark.parametrize("query", ["学习", "猫", "서울", "パン 学习"])
def test_short_cjk_terms_are_an_index_lookup_not_a_scan_of_chunk_texts(
    store: Store, corpus: dict[str, int], query: str
) -> None:
    for filters in ({}, {"globs": ["*.md"]}):
        reads = chunk_columns_read(store, query, **filters)
        assert ("chunks", "text") not in reads, reads
        assert any(table == "chunks_cjk_bigrams" for table, _ in reads), reads


def test_an_index_from_before_the_bigram_table_is_migrated_from_stored_texts(store: Store, root: Path) -> None:
    """The shape of the previous schema (trigram text only, no bigrams) gains both on open."""
    root_id = store.files.add_root(root)
    vectors = unit_vectors(np.random.default_rng(14), 3)
    write(store, root_id, root, "ko/seoul.md", ["어제 서울에서 친구를 만났어요."], vectors[0:1])
    write(store, root_id, root, "zh/ml.md", ["机器学习是人工智能的一个分支"], vectors[1:2])
    chunks = [make_chunk(0, "English only.", vectors[2], heading="天气预报")]
    store.files.write_file(FileRecord(root_id, "en/forecast.md", str(root / "en/forecast.md"), 1, 1, "h"), chunks)
    before = next(i for i, step in enumerate(MIGRATIONS) if "cjk_bigrams" in step.__name__)
    store._conn.execute(  # noqa: SLF001 - rewind the file to the schema before the migration
        f"""
        DROP TABLE chunks_cjk_bigrams;
        DROP TABLE chunks_cjk;
        CREATE VIRTUAL TABLE chunks_cjk USING fts5(text, content='', contentless_delete=1, tokenize='trigram');
        INSERT INTO chunks_cjk(rowid, text) SELECT id, text FROM chunks WHERE text NOT LIKE 'English%';
        ALTER TABLE chunks DROP COLUMN page_start;  -- added by a later migration
        ALTER TABLE chunks DROP COLUMN page_end;
        DROP TABLE chunks_stemmed;  -- added by a later migration
        PRAGMA user_version = {before};
        """
    )
    with Store.open(store.path, create=False) as migrated, migrated.writer_lock():  # a writer migrates
        assert migrated.schema_version() == SCHEMA_VERSION
        ids = {record.relpath: chunk_id for chunk_id, record in migrated.files.chunks_by_id(range(1, 10)).items()}
        assert top(migrated, "서울") == [ids["ko/seoul.md"]]
        assert top(migrated, "学习") == [ids["zh/ml.md"]]
        assert top(migrated, "天气预报") == [ids["en/forecast.md"]]
        assert_consistent(migrated, chunks=3, cjk_chunks=3, files=3)


# ---------------------------------------------------------------------- concurrency
def test_a_reader_sees_the_last_commit_while_a_writer_transaction_is_open(store: Store, root: Path) -> None:
    root_id = store.files.add_root(root)
    rng = np.random.default_rng(8)
    write(store, root_id, root, "a.md", ["original walrus text"], unit_vectors(rng, 1))
    with Store.open(store.path, create=False) as reader:
        with store.transaction():
            write(store, root_id, root, "a.md", ["rewritten narwhal text", "second part"], unit_vectors(rng, 2))
            assert len(reader.keywords.keyword_search("walrus", 5)) == 1
            assert reader.keywords.keyword_search("narwhal", 5) == []
            assert reader.maintenance.stats()["chunks"] == 1
            assert len(reader.vectors.vector_search(unit_vectors(rng, 1)[0], 5)) == 1
        assert reader.keywords.keyword_search("walrus", 5) == []
        assert len(reader.keywords.keyword_search("narwhal", 5)) == 2  # its chunk and its neighbour
        assert reader.maintenance.stats()["chunks"] == 2


def test_a_failed_write_leaves_the_previous_version(store: Store, root: Path) -> None:
    root_id = store.files.add_root(root)
    rng = np.random.default_rng(9)
    write(store, root_id, root, "a.md", ["original walrus text"], unit_vectors(rng, 1))
    with pytest.raises(RuntimeError), store.transaction():
        write(store, root_id, root, "a.md", ["rewritten narwhal text"], unit_vectors(rng, 1))
        raise RuntimeError("interrupted")
    assert len(store.keywords.keyword_search("walrus", 5)) == 1
    assert_consistent(store, chunks=1, cjk_chunks=0, files=1)


def test_writer_lock_refuses_a_second_holder_in_this_process(store: Store) -> None:
    import os

    with Store.open(store.path) as other:
        with store.writer_lock():
            with pytest.raises(EdgeEmbedError, match=rf"writing to .*index\.db \(pid {os.getpid()}\); wait"):
                with other.writer_lock():
                    pass
        with other.writer_lock():  # released: the next writer gets it
            pass


def test_writer_lock_refuses_while_another_process_holds_it(store: Store) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import sys
                from edge_embed.store import Store
                with Store.open({str(store.path)!r}) as store, store.writer_lock():
                    print("locked", flush=True)
                    sys.stdin.readline()
                """
            ),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(EdgeEmbedError, match=rf"\(pid {holder.pid}\)"):
            with store.writer_lock():
                pass
    finally:
        holder.communicate("done\n", timeout=30)
    with store.writer_lock():
        pass


def test_checkpoint_empties_the_wal(tmp_path):
    import numpy as np

    from edge_embed.store import IndexSettings, NewChunk, Store

    with Store.open(tmp_path / "wal.db") as store:
        store.meta.init_settings(IndexSettings("m", "m.gguf", 1, "h", 4, 512, 51))
        root = store.files.add_root(tmp_path)
        vector = np.ones(4, dtype=np.float32) / 2
        store.files.write_file(FileRecord(root, "a.md", str(tmp_path / "a.md"), 1, 1, "c"), [NewChunk(0, 1, 1, "", "text " * 500, "t", vector)])
        wal = tmp_path / "wal.db-wal"
        assert wal.stat().st_size > 0
        store.maintenance.checkpoint()
        assert wal.stat().st_size == 0
        assert store.maintenance.integrity_check() == "ok"


def test_root_paths_and_chunk_count_agree_with_roots_and_stats(tmp_path):
    import numpy as np

    from edge_embed.store import IndexSettings, NewChunk, Store

    with Store.open(tmp_path / "cheap.db") as store:
        store.meta.init_settings(IndexSettings("m", "m.gguf", 1, "h", 4, 512, 51))
        first = store.files.add_root(tmp_path / "b")
        store.files.add_root(tmp_path / "a")
        vector = np.ones(4, dtype=np.float32) / 2
        chunks = [NewChunk(i, 1, 1, "", f"text {i}", f"t{i}", vector) for i in range(3)]
        store.files.write_file(FileRecord(first, "x.md", str(tmp_path / "b" / "x.md"), 1, 1, "c"), chunks)
        assert store.files.root_paths() == [root.path for root in store.files.roots()] == [str(tmp_path / "a"), str(tmp_path / "b")]
        assert store.files.chunk_count() == store.maintenance.stats()["chunks"] == 3


def test_a_query_of_words_in_most_chunks_gets_no_strong_keyword_share(store: Store, root: Path) -> None:
    """FTS5 gives a word in over half the chunks an IDF of 1e-6: the ceiling of a query of
    only such words must not shrink with it, or a chunk repeating them scores ~1 of 1."""
    root_id = store.files.add_root(root)
    texts = [f"login cache note {i} " + ("login cache " * (i % 3)) for i in range(8)] + ["a rare zeppelin"]
    write(store, root_id, root, "a.md", texts, unit_vectors(np.random.default_rng(21), len(texts)))
    best = store.keywords.keyword_search("login cache", 1)[0][1]
    assert best / store.keywords.keyword_ceiling("login cache") < 0.01
    rare = store.keywords.keyword_search("zeppelin", 1)[0][1]
    assert 0.2 < rare / store.keywords.keyword_ceiling("zeppelin") <= 1.0
