"""Two-stage vector search: the sign-bit codes stay in sync, recall holds above the exact
threshold, old indexes migrate from their stored vectors, and the deepening loop of
search() does only the work its page needs (issue 11; issue 7 item 16)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import apsw
import numpy as np
import pytest

from edge_embed.search import SearchOptions, search
from edge_embed.store import SCHEMA_VERSION, FileRecord, IndexSettings, NewChunk, Store
from edge_embed.store import core as core_module
from edge_embed.store import coarse as coarse_module
from edge_embed.store import schema as schema_module
from edge_embed.store import vectors as vectors_module
from edge_embed.store.schema import MIGRATIONS, _migration_4_coarse_vectors
from edge_embed.store.coarse import BLOCK_ROWS, bit_counts, sign_codes
from edge_embed.store.files import Files
from edge_embed.store.keyword_search import Keywords
from edge_embed.store.vectors import Vectors, VectorRanking


def scalar(store: Store, sql: str) -> object:
    """The one value ``sql`` reads from the store's file."""
    return store._conn.execute(sql).fetchall()[0][0]  # noqa: SLF001 - the test reads the rows it checks


def unit(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    return vectors / np.linalg.norm(vectors, axis=-1, keepdims=True)


def embedding_like(rng: np.random.Generator, n: int, dims: int) -> np.ndarray:
    """Unit vectors with a power-law spectrum under a random rotation (like real embeddings)."""
    rotation, _ = np.linalg.qr(np.random.default_rng(0).standard_normal((dims, dims)))
    return unit((rng.standard_normal((n, dims)) * np.arange(1, dims + 1) ** -0.5) @ rotation.T)


def open_index(path: Path, dims: int) -> Store:
    store = Store.open(path)
    store.meta.init_settings(IndexSettings("test", "/m.gguf", 1, "h" * 64, dims, 256, 0))
    return store


def write_files(store: Store, root: Path, vectors: np.ndarray, per_file: int, word: str = "common") -> dict[int, int]:
    """One file per ``per_file`` vectors; returns chunk id -> row of ``vectors``."""
    root_id = store.files.add_root(root)
    rows: dict[int, int] = {}
    with store.transaction():
        for f, start in enumerate(range(0, len(vectors), per_file)):
            write_file(store, root_id, root, f"f{f:05d}.md", vectors[start : start + per_file], word)
            ids = store._conn.execute("SELECT id FROM chunks WHERE file_id = (SELECT max(id) FROM files) ORDER BY seq")
            rows.update({chunk_id: start + i for i, (chunk_id,) in enumerate(ids)})
    return rows


def write_file(store: Store, root_id: int, root: Path, relpath: str, vectors: np.ndarray, word: str = "common") -> None:
    chunks = [
        NewChunk(i, i + 1, i + 1, None, f"{word} {relpath} {i} " + "filler " * filler_count(relpath, i), hashlib.sha256(f"{relpath}{i}{v[0]}".encode()).hexdigest(), v)
        for i, v in enumerate(vectors)
    ]
    store.files.write_file(FileRecord(root_id, relpath, str(root / relpath), 1, 1, relpath), chunks)


def filler_count(relpath: str, seq: int) -> int:
    """'filler' 10 times in chunk 1 of every tenth file, once everywhere else."""
    return 10 if relpath.endswith("0.md") and seq == 1 else 1


def stored_codes(store: Store) -> dict[int, bytes]:
    """chunk id -> its code, as the blocks hold them; also checks the blocks' id order."""
    codes: dict[int, bytes] = {}
    previous = 0
    for first_id, raw_ids, raw_codes in store._conn.execute("SELECT first_id, ids, codes FROM chunk_bits ORDER BY first_id"):
        ids = np.frombuffer(raw_ids, dtype=np.int64)
        assert 0 < len(ids) <= BLOCK_ROWS and ids[0] >= first_id > previous and np.all(np.diff(ids) > 0)
        previous = int(ids[-1])
        width = len(raw_codes) // len(ids)
        for chunk_id, code in zip(ids, np.frombuffer(raw_codes, dtype=np.uint8).reshape(len(ids), width)):
            codes[int(chunk_id)] = code.tobytes()
    return codes


def expected_codes(store: Store) -> dict[int, bytes]:
    rows = store._conn.execute("SELECT chunk_id, embedding FROM chunk_vectors").fetchall()
    return {int(i): sign_codes(np.frombuffer(blob, dtype=np.float32))[0].tobytes() for i, blob in rows}


def assert_same_ranking(got: list[tuple[int, float]], want: list[tuple[int, float]]) -> None:
    """Same chunks in the same order; distances equal up to float32 rounding (numpy and
    sqlite-vec sum the squares in different orders)."""
    assert [chunk_id for chunk_id, _ in got] == [chunk_id for chunk_id, _ in want]
    np.testing.assert_allclose([d for _, d in got], [d for _, d in want], rtol=1e-6)


# ---------------------------------------------------------------------- the codes
def test_codes_follow_writes_rewrites_and_deletes(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    with open_index(tmp_path / "i.db", 24) as store:
        write_files(store, tmp_path, unit(rng.standard_normal((700, 24))), per_file=70)  # 10 files, 3 blocks
        root_id = store.files.add_root(tmp_path)
        for f in (0, 4, 9):  # rewrites: the old chunks leave their blocks, the new ones are appended
            write_file(store, root_id, tmp_path, f"f{f:05d}.md", unit(rng.standard_normal((5, 24))))
        store.files.delete_file(int(scalar(store, "SELECT id FROM files WHERE relpath = 'f00002.md'")))
        assert stored_codes(store) == expected_codes(store)
        assert len(stored_codes(store)) == int(scalar(store, "SELECT count(*) FROM chunks")) == 700 - 3 * 70 + 15 - 70
        assert store.maintenance.integrity_check() == "ok"
        store._conn.execute("DELETE FROM chunk_bits WHERE first_id = (SELECT max(first_id) FROM chunk_bits)")
        assert "chunk_bits has" in store.maintenance.integrity_check()
        store.files.remove_root(tmp_path)
        assert scalar(store, "SELECT count(*) FROM chunk_bits") == 0  # emptied blocks are deleted


def test_bit_counts_without_numpy_2_popcount(monkeypatch: pytest.MonkeyPatch) -> None:
    words = np.random.default_rng(0).integers(0, 2**63, size=(50, 4), dtype=np.uint64)
    want = [sum(bin(int(w)).count("1") for w in row) for row in words]
    assert bit_counts(words).sum(axis=1).tolist() == want
    monkeypatch.delattr(np, "bitwise_count", raising=False)  # numpy 1.26 has none
    assert bit_counts(words).sum(axis=1).tolist() == want


def test_forced_two_stage_path_is_taken(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    with open_index(tmp_path / "i.db", 16) as store:
        write_files(store, tmp_path, unit(rng.standard_normal((50, 16))), per_file=10)
        query = unit(rng.standard_normal(16))
        assert store.vectors.vector_ranking(query).exact
        store.vectors.exact_scan_max_floats = store.vectors.two_stage_min_dims = 0
        ranking = store.vectors.vector_ranking(query)
        assert not ranking.exact
        assert_same_ranking(ranking.top(10), Vectors.vector_search(store.vectors, query, 10))
        assert ranking.rescored == 50  # fewer chunks than RESCORE_MIN: every one re-scored, exact


def test_an_index_of_few_dimensions_keeps_the_exact_scan(tmp_path: Path) -> None:
    """Sign bits of a 64-dim vector say too little (recall@10 0.81 at 20k chunks), so however
    many chunks, such an index is searched exactly; 256 dims take two stages when big."""
    rng = np.random.default_rng(8)
    with open_index(tmp_path / "low.db", 64) as store:
        write_files(store, tmp_path, unit(rng.standard_normal((40, 64))), per_file=10)
        store.vectors.exact_scan_max_floats = 0  # as if it held millions of chunks
        assert store.vectors.vector_ranking(unit(rng.standard_normal(64))).exact
    with open_index(tmp_path / "high.db", 256) as store:
        write_files(store, tmp_path, unit(rng.standard_normal((40, 256))), per_file=10)
        store.vectors.exact_scan_max_floats = 0
        assert not store.vectors.vector_ranking(unit(rng.standard_normal(256))).exact


def test_a_bigger_index_re_scores_more_candidates(three_thousand, monkeypatch: pytest.MonkeyPatch) -> None:
    """Near-ties grow with the corpus: at 1M chunks 160 re-scored candidates gave recall@10
    0.97 (320: 0.995), so the count grows with the index (one per CHUNKS_PER_RESCORED)."""
    store, _, rng = three_thousand
    store.vectors.exact_scan_max_floats = store.vectors.two_stage_min_dims = 0
    query = unit(rng.standard_normal(16))
    ranking = store.vectors.vector_ranking(query)
    ranking.top(10)
    assert ranking.rescored == vectors_module.RESCORE_MIN  # 3,000 chunks: the floor
    monkeypatch.setattr(vectors_module, "CHUNKS_PER_RESCORED", 10)
    ranking = store.vectors.vector_ranking(query)
    assert_same_ranking(ranking.top(10), store.vectors.vector_ranking(query).top(10))
    assert ranking.rescored == 300


# ---------------------------------------------------------------------- recall above the threshold
@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory):
    """6,000 embedding-like 256-dim vectors, 20 per file; searched on the two-stage path."""
    path = tmp_path_factory.mktemp("synthetic")
    rng = np.random.default_rng(3)
    vectors = embedding_like(rng, 6000, 256)
    store = open_index(path / "i.db", 256)
    rows = write_files(store, path / "root", vectors, per_file=20)
    store.vectors.exact_scan_max_floats = store.vectors.two_stage_min_dims = 0
    yield store, vectors, rows, rng, path / "root"
    store.close()


def test_two_stage_recall_at_10_on_embedding_like_vectors(synthetic) -> None:
    store, vectors, rows, rng, _ = synthetic
    ids = np.array(sorted(rows))
    planted = rng.choice(len(vectors), 40, replace=False)
    queries = unit(vectors[planted] + 0.5 * embedding_like(rng, 40, 256))
    found = planted_hits = 0
    for row, query in zip(planted, queries):
        exact = set(ids[np.argsort(-(vectors[[rows[i] for i in ids]] @ query))[:10]].tolist())
        got = [chunk_id for chunk_id, _ in store.vectors.vector_search(query, 10)]
        found += len(exact & set(got))
        planted_hits += rows[got[0]] == row
    assert found / 400 >= 0.98
    assert planted_hits == 40


def test_two_stage_filters_apply_inside_the_coarse_stage(synthetic) -> None:
    store, vectors, rows, rng, root = synthetic
    query = unit(rng.standard_normal(256))
    kept = [i for i in rows if rows[i] < 20]  # the first file: 20 of 6,000 chunks
    want = sorted(kept, key=lambda i: -float(vectors[rows[i]] @ query))[:10]
    for filters in ({"globs": ["f00000.md"]}, {"path_prefixes": [str(root / "f00000.md")]}):
        assert [chunk_id for chunk_id, _ in store.vectors.vector_search(query, 10, **filters)] == want
    assert len(store.vectors.vector_search(query, 50, globs=["f00000.md"])) == 20  # fewer only when fewer exist


# ---------------------------------------------------------------------- migration
MAIN_VECTOR_TABLE = "CREATE VIRTUAL TABLE chunk_vectors USING vec0(chunk_id INTEGER PRIMARY KEY, embedding float[{dims}] distance_metric=l2)"


BEFORE_CODES = MIGRATIONS.index(_migration_4_coarse_vectors)


def make_index_without_codes(path: Path, vectors: np.ndarray) -> None:
    """An index as edge-embed wrote it before the coarse stage: vec0 with its default chunk
    size, no codes, the schema version before migration 4."""
    with open_index(path, vectors.shape[1]) as store:
        write_files(store, path.parent / "root", vectors, per_file=25)
    conn = apsw.Connection(str(path))
    conn.enable_load_extension(True)
    import sqlite_vec

    sqlite_vec.load(conn)
    with conn:
        conn.execute("CREATE TABLE old_vectors AS SELECT chunk_id, embedding FROM chunk_vectors")
        conn.execute("DROP TABLE chunk_vectors; DROP TABLE chunk_bits")
        conn.execute(MAIN_VECTOR_TABLE.format(dims=vectors.shape[1]))
        conn.execute("INSERT INTO chunk_vectors SELECT chunk_id, embedding FROM old_vectors; DROP TABLE old_vectors")
        conn.execute("DROP TABLE chunks_stemmed")  # migration 5's, which comes after the codes
        conn.execute(f"PRAGMA user_version = {BEFORE_CODES}")
    conn.close()


def test_an_index_without_codes_migrates_from_stored_vectors(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    vectors = unit(rng.standard_normal((300, 32)))
    make_index_without_codes(tmp_path / "i.db", vectors)
    query = unit(rng.standard_normal(32))
    with Store.open(tmp_path / "i.db", create=False) as store, store.writer_lock():  # a writer migrates
        assert store.schema_version() == SCHEMA_VERSION
        assert "chunk_size=16" in str(scalar(store, "SELECT sql FROM sqlite_schema WHERE name = 'chunk_vectors'"))
        assert stored_codes(store) == expected_codes(store) and len(stored_codes(store)) == 300
        exact = store.vectors.vector_search(query, 10)
        store.vectors.exact_scan_max_floats = store.vectors.two_stage_min_dims = 0
        assert_same_ranking(store.vectors.vector_search(query, 10), exact)
        assert store.maintenance.integrity_check() == "ok"
    want = np.argsort(-(vectors @ query))[:10] + 1
    assert [chunk_id for chunk_id, _ in exact] == want.tolist()


def test_migration_copies_vectors_inside_the_index_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Not through a TEMP table: SQLite puts those in $TMPDIR (often a small RAM disk), where a
    big index's vectors do not fit, and the index would not open at all."""
    make_index_without_codes(tmp_path / "i.db", unit(np.random.default_rng(9).standard_normal((60, 8))))
    statements: list[str] = []
    connect = schema_module.connect

    def traced(path: Path, create: bool) -> apsw.Connection:
        conn = connect(path, create)
        conn.exec_trace = lambda cursor, sql, bindings: statements.append(sql) or True
        return conn

    monkeypatch.setattr(schema_module, "connect", traced)
    monkeypatch.setattr(core_module, "connect", traced)
    with Store.open(tmp_path / "i.db", create=False) as store, store.writer_lock():
        assert store.schema_version() == SCHEMA_VERSION and store.maintenance.integrity_check() == "ok"
    assert any("INSERT INTO chunk_vectors" in sql for sql in statements)  # the trace saw the rebuild
    assert not [sql for sql in statements if "TEMP" in sql.upper().split("(")[0] or "temp." in sql]


def test_interrupted_migration_leaves_the_old_index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(5)
    make_index_without_codes(tmp_path / "i.db", unit(rng.standard_normal((100, 8))))

    def crash(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(coarse_module, "fill_coarse_table", crash)
    with pytest.raises(KeyboardInterrupt), Store.open(tmp_path / "i.db", create=False) as store, store.writer_lock():
        pass
    conn = apsw.Connection(str(tmp_path / "i.db"))
    assert conn.execute("PRAGMA user_version").fetchall()[0][0] == BEFORE_CODES
    assert "chunk_size" not in conn.execute("SELECT sql FROM sqlite_schema WHERE name = 'chunk_vectors'").fetchall()[0][0]
    conn.close()
    monkeypatch.undo()
    with Store.open(tmp_path / "i.db", create=False) as store, store.writer_lock():
        assert store.schema_version() == SCHEMA_VERSION and len(stored_codes(store)) == 100


# ---------------------------------------------------------------------- the deepening loop (issue 7 item 16)
@pytest.fixture
def three_thousand(tmp_path: Path):
    """3,000 chunks in 300 files of 10, every chunk containing the word 'common'."""
    rng = np.random.default_rng(6)
    store = open_index(tmp_path / "i.db", 16)
    rows = write_files(store, tmp_path, unit(rng.standard_normal((3000, 16))), per_file=10)
    yield store, rows, rng
    store.close()


def count_calls(monkeypatch: pytest.MonkeyPatch, owner: object, name: str, size=lambda args: 1) -> list[int]:
    """Record each call of owner.name (or the size ``size`` gives its arguments)."""
    calls: list[int] = []
    original = getattr(owner, name)

    def spy(self, *args, **kwargs):
        args = tuple(list(a) if isinstance(a, Iterator) else a for a in args)  # a generator is read once
        calls.append(size(args))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(owner, name, spy)
    return calls


def test_min_score_stops_when_no_deeper_keyword_candidate_can_pass(three_thousand, monkeypatch) -> None:
    store, _, _ = three_thousand
    floor = store.keywords.keyword_search("filler", 30)[-1][1]  # the 30 chunks with 'filler' 10 times pass
    calls = count_calls(monkeypatch, Keywords, "keyword_search")
    hits = search(store, "filler", SearchOptions(mode="keyword", k=50, per_file=0, min_score=floor), embed_query=None)
    assert len(calls) == 1  # the 100th candidate is below the floor: no deeper list (before: 4 calls)
    assert len(hits) == 30 == sum(1 for _, score in store.keywords.keyword_search("filler", 3000) if score >= floor)


def test_min_score_stops_when_no_deeper_vector_candidate_can_pass(three_thousand, monkeypatch) -> None:
    store, _, rng = three_thousand
    query = unit(rng.standard_normal(16))
    floor = 1 - store.vectors.vector_search(query, 3)[2][1] ** 2 / 2  # the third cosine: 3 pass
    depths = count_calls(monkeypatch, VectorRanking, "top", size=lambda args: args[0])
    hits = search(store, "x", SearchOptions(mode="vector", k=10, min_score=floor), embed_query=lambda _: query)
    assert len(hits) == 3
    assert depths == [50]


@pytest.mark.parametrize("path", ["exact", "two-stage"])
def test_files_k100_reads_only_the_page_and_matches_the_exact_answer(three_thousand, monkeypatch, path) -> None:
    store, rows, rng = three_thousand
    query = unit(rng.standard_normal(16))
    best_per_file: dict[str, float] = {}
    for chunk_id, distance in store.vectors.vector_search(query, 3000):
        best_per_file.setdefault(store.files.chunks_by_id([chunk_id])[chunk_id].path, distance)
    if path == "two-stage":
        store.vectors.exact_scan_max_floats = store.vectors.two_stage_min_dims = 0
    records = count_calls(monkeypatch, Files, "chunks_by_id", size=lambda args: len(args[0]))
    floats = count_calls(monkeypatch, VectorRanking, "_exact_distances", size=lambda args: len(args[0]))
    hits = search(store, "x", SearchOptions(mode="vector", k=100, per_file=1), embed_query=lambda _: query)
    assert sum(records) == 100  # before: every candidate's record (500 and more)
    assert sum(floats) <= 300  # two-stage: the float vectors read back are O(k) (exact: none)
    assert len({hit.chunk.path for hit in hits}) == 100
    if path == "exact":  # (16 sign bits are too coarse a code for the two-stage page to be exact;
        # its recall is tested on 256-dim embedding-like vectors above)
        assert [hit.chunk.path for hit in hits] == list(best_per_file)[:100]


@pytest.mark.parametrize("exact", [True, False])
def test_a_vector_table_gone_under_a_ranking_is_a_one_line_index_error(tmp_path: Path, exact: bool) -> None:
    """Issue 16, defect 1: ``VectorRanking.top`` reads the store outside the Store's public
    methods, so a raw ``apsw.SQLError: no such table`` escaped (the server answered 500)."""
    from edge_embed.errors import IndexChanged

    store = open_index(tmp_path / "x.db", 256)
    vectors = embedding_like(np.random.default_rng(3), 40, 256)
    write_files(store, tmp_path, vectors, per_file=4)
    ranking = store.vectors.vector_ranking(vectors[0])
    ranking.exact = exact
    store._conn.execute("DROP TABLE chunk_vectors; DROP TABLE chunk_bits")  # as a rebuild swapping tables would
    with pytest.raises(IndexChanged, match="was rebuilt while this command read it"):
        ranking.top(5)
    store.close()
