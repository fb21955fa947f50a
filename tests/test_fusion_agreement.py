"""Hybrid fusion keeps what both lists agree on: a property over random score lists.

Whatever the fusion formula, a file (a chunk, without per-file grouping) on the first
page of the vector list and on the first page of the keyword list is on the hybrid page.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from edge_embed.results import Fusion
from edge_embed.search import agreeing_page, fuse, limit_per_file

Ranked = list[tuple[int, float]]


def own_page_units(ranked: Ranked, per_file: int, size: int, file_of) -> set[object]:
    """What one list alone shows on a page of ``size``: files, or chunk ids without grouping."""
    kept = limit_per_file(ranked, per_file, size, lambda item: file_of(item[0]))
    return {file_of(cid) if per_file else cid for cid, _ in kept}


@st.composite
def score_lists(draw):
    """Two best-first lists over up to 40 chunks in up to 12 files, with scores on the
    library's scales (cosine -1..1, BM25 0..ceiling), each cut at its own length."""
    chunks = draw(st.integers(1, 40))
    files = draw(st.lists(st.integers(0, 11), min_size=chunks, max_size=chunks))
    ceiling = draw(st.floats(0.5, 60.0))

    def one_list(low: float, high: float) -> Ranked:
        ids = draw(st.permutations(range(chunks)))[: draw(st.integers(0, chunks))]
        scores = sorted(draw(st.lists(st.floats(low, high), min_size=len(ids), max_size=len(ids))), reverse=True)
        return list(zip(ids, scores))

    vector, keyword = one_list(-1.0, 1.0), one_list(0.0, ceiling)
    depth = draw(st.integers(1, 40))
    floors = [scores[-1][1] if scores and len(scores) >= depth else 0.0 for scores in (vector, keyword)]
    return vector, keyword, files, Fusion(ceiling, *floors)


@settings(max_examples=400, deadline=None)
@given(score_lists(), st.integers(0, 3), st.integers(1, 12))
def test_what_both_lists_show_stays_on_the_hybrid_page(lists, per_file, size) -> None:
    vector, keyword, files, fusion = lists
    fused = fuse(vector, keyword, fusion)
    page = agreeing_page(fused, vector, keyword, per_file, size, files.__getitem__)

    def unit(chunk_id: int) -> object:
        return files[chunk_id] if per_file else chunk_id

    agreed = own_page_units(vector, per_file, size, files.__getitem__) & own_page_units(
        keyword, per_file, size, files.__getitem__
    )
    assert agreed <= {unit(c.chunk_id) for c in page}
    # otherwise a page like any other: as full as the fused order allows, no repeats, the per-file cap kept
    plain = limit_per_file(fused, per_file, size, lambda c: files[c.chunk_id])
    assert len(page) == len(plain)
    assert len({c.chunk_id for c in page}) == len(page)
    if per_file:
        assert all(sum(files[c.chunk_id] == files[d.chunk_id] for d in page) <= per_file for c in page)
    # and it changes only what it must: without a missing agreed file, the page is the fused one
    if agreed <= {unit(c.chunk_id) for c in plain}:
        assert page == plain


def test_a_file_both_lists_rank_high_is_not_pushed_out_by_one_sided_matches() -> None:
    """The issue's case: vector #7 and keyword #6 fell off a page of 10, as six vector-only
    and five keyword-only chunks each outscored it in one list (a sum of 0.9 against 0.7)."""
    agreed = 100
    vector = [(i, 0.9) for i in range(6)] + [(agreed, 0.5)] + [(50 + i, 0.45) for i in range(3)]
    keyword = [(20 + i, 27.0) for i in range(5)] + [(agreed, 6.0)]
    fused = fuse(vector, keyword, Fusion(keyword_ceiling=30.0))
    assert agreed not in [c.chunk_id for c in fused[:10]], "the sum alone drops it"
    page = agreeing_page(fused, vector, keyword, per_file=0, size=10, file_of=lambda cid: cid)
    assert [c.chunk_id for c in page] == [c.chunk_id for c in fused[:9]] + [agreed]


def test_per_file_agreement_counts_a_files_best_chunk_in_each_list() -> None:
    """File F is #2 of the vector files (chunk 1) and #2 of the keyword files (chunk 2, another
    chunk of F): F is agreed although no single chunk of it is in both lists."""
    files = {0: "a", 1: "F", 2: "F", 3: "b", 4: "c", 5: "d"}
    vector = [(0, 0.95), (1, 0.40), (3, 0.39)]
    keyword = [(4, 29.0), (2, 3.0), (5, 2.9)]
    fused = fuse(vector, keyword, Fusion(keyword_ceiling=30.0))
    plain = limit_per_file(fused, 1, 2, lambda c: files[c.chunk_id])
    assert "F" not in {files[c.chunk_id] for c in plain}
    page = agreeing_page(fused, vector, keyword, per_file=1, size=2, file_of=files.__getitem__)
    # fused: c (0 + 29/30) before a (0.95); F by its best fused chunk, 1 (0.40) rather than 2 (0.10)
    assert [c.chunk_id for c in page] == [4, 1]
