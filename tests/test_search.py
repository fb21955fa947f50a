"""search.py: fusion maths, per-file grouping, min-score, filters, exactness against numpy."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from edge_embed.errors import EdgeEmbedError
from edge_embed.results import Fusion, Hit, ListRank
from edge_embed.runtime.loader import load_embedder
from edge_embed.runtime.plan import RuntimeSettings
from edge_embed.search import (
    SearchOptions,
    cosine_from_l2,
    fuse,
    limit_per_file,
    list_floor,
    search,
)
from edge_embed.store import ChunkRecord, FileRecord, IndexSettings, NewChunk, Store

DIMS = 16


# ---------------------------------------------------------------------- pure maths
def test_fusion_adds_the_cosine_and_the_share_of_the_bm25_ceiling_hand_computed() -> None:
    vector = [(1, 0.9), (2, 0.8), (3, 0.7)]
    keyword = [(3, 7.5), (4, 5.0)]
    fused = fuse(vector, keyword, Fusion(keyword_ceiling=25.0))
    # 3: 0.7 + 7.5/25 = 1.0; 1: 0.9 + 0; 2: 0.8 + 0; 4: 0 + 5/25 = 0.2 (a missing list adds its floor, here 0)
    assert [c.chunk_id for c in fused] == [3, 1, 2, 4]
    assert [c.score for c in fused] == pytest.approx([1.0, 0.9, 0.8, 0.2])
    both = fused[0]
    assert (both.vector.rank, both.vector.score, both.keyword.rank, both.keyword.score) == (3, 0.7, 1, 7.5)
    assert fused[1].keyword is None and fused[3].vector is None


def test_a_keyword_first_place_on_common_words_does_not_outrank_the_vector_first() -> None:
    """RRF (the old fusion) put B first: #1 in keyword and #2 in vector beats #1 and #3."""
    vector = [(1, 0.80), (2, 0.60)]  # A (1) is clearly the closest in meaning
    keyword = [(2, 1.0), (3, 0.95), (1, 0.9)]  # all three only share common words: BM25 far below the ceiling
    fused = fuse(vector, keyword, Fusion(keyword_ceiling=30.0))
    assert [c.chunk_id for c in fused][:2] == [1, 2]


def test_a_decisive_keyword_match_outranks_a_slightly_closer_vector_first() -> None:
    """RRF put A first (#1 vector, #2 keyword) although B holds most of the query's word weight."""
    vector = [(1, 0.52), (3, 0.51), (2, 0.50)]
    keyword = [(2, 25.0), (1, 1.0)]
    fused = fuse(vector, keyword, Fusion(keyword_ceiling=30.0))
    assert fused[0].chunk_id == 2


def test_a_chunk_missing_from_a_full_list_gets_its_last_score() -> None:
    vector = [(1, 0.7), (2, 0.6)]
    keyword = [(3, 12.0), (1, 6.0)]
    assert (list_floor(vector, depth=2), list_floor(keyword, depth=2)) == (0.6, 6.0)
    assert list_floor(keyword, depth=3) == 0.0, "a list shorter than the depth holds every match"
    fusion = Fusion(keyword_ceiling=30.0, vector_floor=0.6, keyword_floor=6.0)
    scores = {c.chunk_id: c.score for c in fuse(vector, keyword, fusion)}
    assert scores == pytest.approx({1: 0.7 + 0.2, 2: 0.6 + 0.2, 3: 0.6 + 0.4})
    assert fusion.score(None, ListRank(1, 12.0)) == pytest.approx(1.0)


def test_no_keyword_words_leave_the_cosine_alone() -> None:
    fused = fuse([(1, 0.5)], [], Fusion(keyword_ceiling=0.0))
    assert [(c.chunk_id, c.score) for c in fused] == [(1, 0.5)]


def test_cosine_from_l2_distance_of_unit_vectors() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((2, DIMS))
    a, b = a / np.linalg.norm(a), b / np.linalg.norm(b)
    assert cosine_from_l2(float(np.linalg.norm(a - b))) == pytest.approx(float(a @ b))
    assert cosine_from_l2(0.0) == 1.0 and cosine_from_l2(2.0) == -1.0


def fake_hit(chunk_id: int, path: str) -> Hit:
    return Hit(ChunkRecord(chunk_id, "/r", f"/r/{path}", path, 1, 2, None, "text"), 1.0 / chunk_id)


def test_limit_per_file_keeps_order_and_caps_each_file() -> None:
    hits = [fake_hit(i, p) for i, p in enumerate("aaabacdd", 1)]
    assert [h.chunk.id for h in limit_per_file(hits, per_file=2, k=5)] == [1, 2, 4, 6, 7]
    assert [h.chunk.id for h in limit_per_file(hits, per_file=1, k=10)] == [1, 4, 6, 7]
    assert [h.chunk.id for h in limit_per_file(hits, per_file=0, k=4)] == [1, 2, 3, 4]


def test_options_refuse_nonsense() -> None:
    with pytest.raises(EdgeEmbedError, match="k must be at least 1") as few:
        SearchOptions(k=0)
    with pytest.raises(EdgeEmbedError, match="per_file must be 0") as negative:
        SearchOptions(per_file=-1)
    assert (few.value.param, negative.value.param) == ("k", "per_file")


# ---------------------------------------------------------------------- a synthetic index
def unit(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    return vectors / np.linalg.norm(vectors, axis=-1, keepdims=True)


class Corpus:
    """An index of random unit vectors over real (empty) files, with numpy ground truth."""

    def __init__(self, tmp_path: Path, store: Store, rng: np.random.Generator) -> None:
        self.root = tmp_path / "notes"
        self.store = store
        self.rng = rng
        self.root_id = store.files.add_root(self.root)
        self.vectors: dict[int, np.ndarray] = {}
        self.paths: dict[int, str] = {}

    def add_file(self, relpath: str, texts: list[str], vectors: np.ndarray | None = None) -> None:
        path = self.root / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
        vectors = unit(self.rng.standard_normal((len(texts), DIMS))) if vectors is None else vectors
        chunks = [
            NewChunk(i, i * 5 + 1, i * 5 + 5, None, text, hashlib.sha256(f"{relpath}{i}".encode()).hexdigest(), vec)
            for i, (text, vec) in enumerate(zip(texts, vectors))
        ]
        self.store.files.write_file(FileRecord(self.root_id, relpath, str(path), 1, 1, relpath), chunks)
        ids = self.store._conn.execute(  # noqa: SLF001 - test reads back the ids it just wrote
            "SELECT c.id FROM chunks c JOIN files f ON f.id = c.file_id WHERE f.relpath = ? ORDER BY c.seq",
            (relpath,),
        ).fetchall()
        for (chunk_id,), vec in zip(ids, vectors):
            self.vectors[chunk_id] = vec
            self.paths[chunk_id] = str(path)

    def nearest(self, query: np.ndarray, keep=lambda path: True) -> list[tuple[int, float]]:
        """Exact (chunk_id, cosine) by numpy, best first, for chunks whose path passes ``keep``."""
        ids = [i for i in self.vectors if keep(self.paths[i])]
        cosines = np.stack([self.vectors[i] for i in ids]) @ query
        order = np.argsort(-cosines, kind="stable")
        return [(ids[j], float(cosines[j])) for j in order]


@pytest.fixture(params=["exact", "two-stage"])
def corpus(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Corpus]:
    """Every search test runs on both vector paths: the two-stage one re-scores at least 160
    candidates, so on this 72-chunk index it must give exactly the exact path's results."""
    with Store.open(tmp_path / "index.db") as store:
        if request.param == "two-stage":
            store.vectors.exact_scan_max_floats = store.vectors.two_stage_min_dims = 0
        store.meta.init_settings(IndexSettings("test", "/m.gguf", 1, "h" * 64, DIMS, 256, 0))
        built = Corpus(tmp_path, store, np.random.default_rng(7))
        for i in range(30):
            built.add_file(f"docs/a{i}.md", [f"document {i} part one", f"document {i} part two"])
        for i in range(6):
            built.add_file(f"sub/x{i}.txt", [f"plain {i} alpha", f"plain {i} beta"])
        yield built


def query_vector(rng: np.random.Generator) -> np.ndarray:
    return unit(rng.standard_normal(DIMS))


def by_vector(vec: np.ndarray):
    return lambda _text: vec


def test_vector_search_matches_numpy_brute_force(corpus: Corpus) -> None:
    q = query_vector(corpus.rng)
    hits = search(corpus.store, "anything", SearchOptions(mode="vector", k=10, per_file=0), embed_query=by_vector(q))
    expected = corpus.nearest(q)[:10]
    assert [h.chunk.id for h in hits] == [i for i, _ in expected]
    assert [h.score for h in hits] == pytest.approx([c for _, c in expected], abs=1e-5)
    assert [h.vector.rank for h in hits] == list(range(1, 11))
    assert all(h.keyword is None for h in hits)


def test_filters_keep_k_results_when_k_exist(corpus: Corpus) -> None:
    q = query_vector(corpus.rng)
    sub = str(corpus.root / "sub")
    expected = [i for i, _ in corpus.nearest(q, keep=lambda p: p.startswith(sub + "/"))[:10]]
    for options in (
        SearchOptions(mode="vector", k=10, per_file=0, in_paths=(sub,)),
        SearchOptions(mode="vector", k=10, per_file=0, globs=("*.txt",)),
        SearchOptions(mode="vector", k=10, per_file=0, globs=("sub/*",)),
    ):
        hits = search(corpus.store, "q", options, embed_query=by_vector(q))
        assert [h.chunk.id for h in hits] == expected, options


def test_in_path_may_be_a_file_or_a_parent_of_the_root(corpus: Corpus) -> None:
    q = query_vector(corpus.rng)
    one_file = corpus.root / "sub" / "x3.txt"
    hits = search(corpus.store, "q", SearchOptions(mode="vector", in_paths=(one_file,)), embed_query=by_vector(q))
    assert {h.chunk.path for h in hits} == {str(one_file)} and len(hits) == 2
    everything = SearchOptions(mode="vector", per_file=0, in_paths=(corpus.root.parent,))
    assert len(search(corpus.store, "q", everything, embed_query=by_vector(q))) == 10


@pytest.mark.parametrize("where", ["missing", "outside"])
def test_unknown_in_path_is_a_one_line_error(corpus: Corpus, tmp_path: Path, where: str) -> None:
    path = tmp_path / "no-such-folder" if where == "missing" else tmp_path / "elsewhere"
    if where == "outside":
        path.mkdir()
    with pytest.raises(EdgeEmbedError, match="^unknown path .*; in_paths takes files or folders") as caught:
        search(corpus.store, "q", SearchOptions(mode="keyword", in_paths=(path,)), embed_query=None)
    assert "\n" not in str(caught.value) and caught.value.param == "in_paths"


def test_per_file_grouping_still_fills_k_when_one_file_floods_the_candidates(corpus: Corpus) -> None:
    q = query_vector(corpus.rng)
    near = unit(q + 0.05 * corpus.rng.standard_normal((80, DIMS)))  # 80 chunks nearer than anything else
    corpus.add_file("big/long.md", [f"long part {i}" for i in range(80)], near)
    long_path = str(corpus.root / "big" / "long.md")
    hits = search(corpus.store, "q", SearchOptions(mode="vector", k=10, per_file=2), embed_query=by_vector(q))
    assert len(hits) == 10
    assert [h.chunk.path for h in hits[:2]] == [long_path, long_path]
    others = [i for i, _ in corpus.nearest(q, keep=lambda p: p != long_path)]
    expected_rest = [h.chunk.id for h in limit_per_file([fake_hit(i, corpus.paths[i]) for i in others], 2, 8)]
    assert [h.chunk.id for h in hits[2:]] == expected_rest


def test_min_score_vector_is_a_cosine_floor(corpus: Corpus) -> None:
    q = query_vector(corpus.rng)
    exact = corpus.nearest(q)
    floor = exact[4][1]  # exactly five chunks reach it
    hits = search(
        corpus.store, "q", SearchOptions(mode="vector", k=10, per_file=0, min_score=floor - 1e-6),
        embed_query=by_vector(q),
    )
    assert [h.chunk.id for h in hits] == [i for i, _ in exact[:5]]


def test_min_score_keyword_is_a_bm25_floor(corpus: Corpus) -> None:
    for name, text in (("many", "walrus walrus walrus here"), ("one", "one walrus"), ("none", "nothing")):
        corpus.add_file(f"w/{name}.md", [text])  # a file each: a chunk's keyword rows hold its neighbours' words
    everything = search(corpus.store, "walrus", SearchOptions(mode="keyword", per_file=0), embed_query=None)
    assert len(everything) == 2 and everything[0].score > everything[1].score
    floor = (everything[0].score + everything[1].score) / 2
    strong = search(
        corpus.store, "walrus", SearchOptions(mode="keyword", per_file=0, min_score=floor), embed_query=None
    )
    assert [h.chunk.id for h in strong] == [everything[0].chunk.id]
    assert strong[0].keyword.score == strong[0].score


def test_hybrid_fuses_scores_and_a_chunk_in_both_lists_wins(corpus: Corpus) -> None:
    q = query_vector(corpus.rng)
    vectors = unit(np.stack([q + 0.3 * corpus.rng.standard_normal(DIMS), -q, -q]))
    corpus.add_file("w/animals.md", ["the walrus, near in meaning", "walrus walrus far in meaning", "unrelated"], vectors)
    both_id = min(i for i, p in corpus.paths.items() if p.endswith("animals.md"))
    hits = search(corpus.store, "walrus", SearchOptions(per_file=0), embed_query=by_vector(q))
    assert hits[0].chunk.id == both_id
    ceiling = corpus.store.keywords.keyword_ceiling("walrus")
    for hit in hits:
        assert hit.fusion is not None and hit.fusion.keyword_ceiling == ceiling
        assert hit.score == pytest.approx(hit.fusion.vector_term(hit.vector) + hit.fusion.keyword_term(hit.keyword))
        assert hit.keyword is None or hit.keyword.score < ceiling
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    vector_ranks = {i: rank for rank, (i, _) in enumerate(corpus.nearest(q), 1)}
    assert all(h.vector.rank == vector_ranks[h.chunk.id] for h in hits if h.vector)
    keyword_only = [h for h in hits if h.vector is None]
    assert keyword_only, "the far walrus chunk is found by keyword only"


def test_hybrid_min_score_keeps_only_chunks_with_a_high_enough_cosine(corpus: Corpus) -> None:
    q = query_vector(corpus.rng)
    corpus.add_file("w/animals.md", ["walrus"], unit(-q[None, :]))
    options = SearchOptions(k=10, per_file=0, min_score=0.0)
    hits = search(corpus.store, "walrus", options, embed_query=by_vector(q))
    assert hits and all(h.vector is not None and h.vector.score >= 0.0 for h in hits)
    assert not any(h.chunk.text == "walrus" for h in hits)


def test_empty_query_is_an_error(corpus: Corpus) -> None:
    for text in ("", "   \n\t"):
        with pytest.raises(EdgeEmbedError, match="empty"):
            search(corpus.store, text, SearchOptions(mode="keyword"), embed_query=None)


def test_cjk_keyword_query_finds_cjk_text(corpus: Corpus) -> None:
    corpus.add_file("zh/notes.md", ["私有的离线语义搜索，中文文本"])
    corpus.add_file("zh/other.md", ["完全无关的句子"])  # another file: not its neighbour
    for query in ("语义搜索", "搜索"):
        hits = search(corpus.store, query, SearchOptions(mode="keyword"), embed_query=None)
        assert [h.chunk.text for h in hits] == ["私有的离线语义搜索，中文文本"], query


# ---------------------------------------------------------------------- the real model
def test_exact_document_text_finds_its_own_chunk_first(tmp_path: Path, tiny_model) -> None:
    embedder = load_embedder(str(tiny_model.path), RuntimeSettings(force_cpu=True, ctx=256))
    texts = [
        "Rotate the API keys every ninety days with the vault CLI.",
        "The cat sat on the mat while the dog slept.",
        "Quarterly budget: travel, hardware and licences.",
        "def retry(fn, attempts=3): back off exponentially between tries",
        "私有的离线语义搜索，中文文本",
    ]
    vectors = embedder.embed_documents(texts)
    with Store.open(tmp_path / "index.db") as store:
        store.meta.init_settings(IndexSettings("tiny", str(tiny_model.path), 1, "h", vectors.shape[1], 256, 0))
        corpus = Corpus(tmp_path, store, np.random.default_rng(0))
        for i, (text, vec) in enumerate(zip(texts, vectors)):
            corpus.add_file(f"f{i}.txt", [text], vec[None, :])
        as_document = lambda text: embedder.embed_documents([text])[0]  # noqa: E731
        for text in texts:
            hits = search(store, text, SearchOptions(mode="vector", k=3), embed_query=as_document)
            assert hits[0].chunk.text == text
            assert hits[0].score == pytest.approx(1.0, abs=1e-4)
    embedder.close()


class PartWith:
    """A store part with some methods replaced (the rest are the part's own)."""

    def __init__(self, part: object, **methods: object) -> None:
        self._part = part
        self.__dict__.update(methods)

    def __getattr__(self, name):
        return getattr(self._part, name)


class CountingStore:
    """Wraps a Store and records the calls search() makes (depths asked, records read)."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.vector_depths: list[int] = []
        self.records_read = 0
        self.vectors = PartWith(store.vectors, vector_ranking=self.vector_ranking)
        self.files = PartWith(store.files, chunks_by_id=self.chunks_by_id)

    def vector_ranking(self, query_vec, **filters):
        ranking = self._store.vectors.vector_ranking(query_vec, **filters)
        top = ranking.top

        def counted_top(depth: int) -> list[tuple[int, float]]:
            self.vector_depths.append(depth)
            return top(depth)

        ranking.top = counted_top
        return ranking

    def chunks_by_id(self, ids):
        ids = list(ids)
        self.records_read += len(ids)
        return self._store.files.chunks_by_id(ids)

    def __getattr__(self, name):
        return getattr(self._store, name)


def test_min_score_stops_deepening_once_the_list_is_below_the_floor(corpus: Corpus) -> None:
    """Issue 7 item 16: a floor no candidate can reach must not deepen the lists to 4096."""
    counting = CountingStore(corpus.store)
    options = SearchOptions(mode="vector", k=10, per_file=0, min_score=0.999)  # no random vector gets there
    hits = search(counting, "q", options, embed_query=by_vector(query_vector(corpus.rng)))
    assert hits == []
    assert counting.vector_depths == [50]  # the 50th candidate is already below the floor


def test_files_mode_reads_only_the_records_it_returns(corpus: Corpus) -> None:
    """-k N --files must cost about N records, not the k * 5 candidates fetched for grouping."""
    counting = CountingStore(corpus.store)
    options = SearchOptions(mode="vector", k=5, per_file=1)
    hits = search(counting, "q", options, embed_query=by_vector(query_vector(corpus.rng)))
    assert len(hits) == 5 and len({h.chunk.path for h in hits}) == 5
    assert counting.records_read == 5
