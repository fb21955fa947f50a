"""Search an index: vector (KNN), keyword (BM25) and hybrid (score fusion).

Hybrid adds the two lists' scores once both mean the same on every query: a chunk's
cosine similarity (the model's own scale) plus its BM25 score divided by the query's
*BM25 ceiling*, the most any chunk could score for these words (``store.keywords.keyword_ceiling``:
(k1 + 1) times the sum of the query terms' IDF). The keyword term is then the share of the
query's term weight a chunk holds, 0..1: a chunk that merely shares "the" and "return"
with the query adds little, one holding its rare words adds much. Neither list gets a
weight, so nothing is tuned to a corpus.

Why not reciprocal rank fusion (the earlier default): RRF sees only ranks, so a keyword #1
that matched common words counts as much as a vector #1, and on source code (where BM25's
first place is often such a match) hybrid fell below vector search alone. The measurements
that decided this are in docs/benchmarks.md, "Retrieval quality".

A chunk that one list did not return gets that list's *floor*: the last candidate's score
when the list was cut at the search depth (the chunk scores at most that), else 0 (it did
not match at all). Fusion happens per chunk, over candidate lists deeper than the final
``k``; then results are grouped so that one long file cannot fill the whole page
(``per_file``). One rule overrides the sum (``agreeing_page``): a file that both lists put
on their own first page stays on the hybrid page, however confident one list is about
other files. When the grouping or ``min_score`` leaves fewer than ``k`` results, the
lists are fetched deeper again (up to the store's KNN limit) rather than returning a short
page.

This module never prints and never loads a model: the caller passes ``embed_query`` (see
``edge_embed.api.Index.query_embedder``), so keyword search works without the model file.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal, TypeVar

from edge_embed.errors import EdgeEmbedError
from edge_embed.results import Fusion, Hit, ListRank, RerankHook
from edge_embed.store import MAX_KNN_K, as_stored, keyword_terms, under_prefix

if TYPE_CHECKING:  # neither numpy nor SQLite is imported by `query` answered by a server
    import numpy as np

    from edge_embed.store import Store

Mode = Literal["hybrid", "vector", "keyword"]
MODES: tuple[Mode, ...] = ("hybrid", "vector", "keyword")
DEFAULT_PER_FILE = 2  # a second section of a file is often the answer; a third rarely adds more
MIN_CANDIDATES = 50  # candidates per list, at least: fusion needs overlap between lists
CANDIDATE_FACTOR = 5  # ... and k * this many in hybrid mode, where the depth changes the fused ranks
SINGLE_LIST_FACTOR = 2  # one list's order does not depend on its depth: start shallower, deepen if short
DEEPEN_FACTOR = 4  # how much deeper the lists go when a page comes back short
EmbedQuery = Callable[[str], "np.ndarray"]
T = TypeVar("T")  # a Hit, or a candidate before its record is read


@dataclass(frozen=True)
class SearchOptions:
    """What to search for and how; the CLI flags map one to one.

    ``min_score`` is compared with a documented score: the cosine similarity in vector and
    hybrid modes (in hybrid, a chunk only the keyword search found has no cosine and is
    dropped), the BM25 score in keyword mode. ``per_file=0`` means no limit per file.
    """

    mode: Mode = "hybrid"
    k: int = 10
    in_paths: tuple[str | Path, ...] = ()
    globs: tuple[str, ...] = ()
    min_score: float | None = None
    per_file: int = DEFAULT_PER_FILE

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.k < 1:
            raise EdgeEmbedError(f"asked for {self.k} results", param="k", hint="{k} must be at least 1")
        if self.per_file < 0:
            raise EdgeEmbedError(
                f"asked for at most {self.per_file} results per file", param="per_file",
                hint="{per_file} must be 0 (no limit) or more",
            )
        if self.min_score is not None and not math.isfinite(self.min_score):
            raise EdgeEmbedError(
                f"the minimum score is {self.min_score}", param="min_score", hint="{min_score} must be a finite number"
            )

    @property
    def uses_vectors(self) -> bool:
        """Whether this search needs the query embedded (and so the model loaded)."""
        return self.mode != "keyword"


@dataclass(frozen=True)
class _Candidate:
    chunk_id: int
    score: float
    vector: ListRank | None
    keyword: ListRank | None


def _hit_path(hit: Hit) -> str:
    return hit.chunk.path


def cosine_from_l2(distance: float) -> float:
    """Cosine similarity of two unit vectors from their L2 distance: 1 - d^2 / 2."""
    return 1.0 - distance * distance / 2.0


def fuse(
    vector: Sequence[tuple[int, float]], keyword: Sequence[tuple[int, float]], fusion: Fusion
) -> list[_Candidate]:
    """Two best-first lists of (chunk_id, score) fused into one, best first (``Fusion.score``).

    Ties are broken by chunk id, so the order is the same on every run.
    """
    ranks: dict[int, dict[str, ListRank]] = defaultdict(dict)
    for name, ranked in (("vector", vector), ("keyword", keyword)):
        for rank, (chunk_id, score) in enumerate(ranked, 1):
            ranks[chunk_id][name] = ListRank(rank, score)
    fused = []
    for chunk_id, by_list in ranks.items():
        vector_rank, keyword_rank = by_list.get("vector"), by_list.get("keyword")
        fused.append(_Candidate(chunk_id, fusion.score(vector_rank, keyword_rank), vector_rank, keyword_rank))
    return sorted(fused, key=lambda c: (-c.score, c.chunk_id))


def list_floor(ranked: Sequence[tuple[int, float]], depth: int) -> float:
    """The score a chunk missing from ``ranked`` is given: at most the last one's when the
    list was cut at ``depth``, else 0 (the search returned every chunk it matched)."""
    return ranked[-1][1] if ranked and len(ranked) >= depth else 0.0


def limit_per_file(hits: Sequence[T], per_file: int, k: int, file_of: Callable[[T], object] = _hit_path) -> list[T]:
    """The first ``k`` hits, keeping at most ``per_file`` per file (0 = no limit), in order.

    ``file_of`` names a hit's file: the path of a Hit, or a file id for a bare candidate.
    """
    kept: list[T] = []
    per_path: dict[object, int] = defaultdict(int)
    for hit in hits:
        file = file_of(hit)
        if per_file and per_path[file] >= per_file:
            continue
        per_path[file] += 1
        kept.append(hit)
        if len(kept) == k:
            break
    return kept


def agreeing_page(
    candidates: Sequence[_Candidate],
    vector: Sequence[tuple[int, float]],
    keyword: Sequence[tuple[int, float]],
    per_file: int,
    size: int,
    file_of: Callable[[int], object],
) -> list[_Candidate]:
    """The hybrid page of ``size``: the fused order (``limit_per_file``), except that what
    both lists put on their own page of ``size`` stays on it.

    "What" is a file when results are grouped per file (``per_file`` > 0), else a chunk:
    a file on the vector page and on the keyword page is on the hybrid page, by its best
    fused chunk. A score sum lets one confident list push such a file out (vector #7 and
    keyword #6 fell off a page of 10 when ten chunks each scored high in one list only);
    both lists agreeing is the strongest evidence fusion has. At most ``size`` files can
    be on both pages, so there is always room: an agreed file missing from the fused page
    takes the place of the lowest entry that is not the first of an agreed file, and is
    placed after the rest (its fused score is below theirs). ``file_of`` maps a chunk id
    to its file (every listed chunk must have one).
    """

    def unit(chunk_id: int) -> object:
        return file_of(chunk_id) if per_file else chunk_id

    def own_page(ranked: Sequence[tuple[int, float]]) -> set[object]:
        return {unit(cid) for cid, _ in limit_per_file(ranked, per_file, size, lambda item: file_of(item[0]))}

    page = limit_per_file(candidates, per_file, size, lambda c: file_of(c.chunk_id))
    agreed = own_page(vector) & own_page(keyword)
    shown = {unit(c.chunk_id) for c in page}
    promoted: list[_Candidate] = []
    for candidate in candidates:  # fused order: each missing agreed unit's best chunk
        if unit(candidate.chunk_id) in agreed - shown:
            shown.add(unit(candidate.chunk_id))
            promoted.append(candidate)
    if not promoted:
        return page
    firsts: set[object] = set()
    keep = []  # (entry, whether it may give its place up)
    for candidate in page:
        u = unit(candidate.chunk_id)
        keep.append((candidate, not (u in agreed and u not in firsts)))
        if u in agreed:
            firsts.add(u)
    excess = len(page) + len(promoted) - size
    for position in range(len(keep) - 1, -1, -1):
        if excess <= 0:
            break
        if keep[position][1]:
            del keep[position]
            excess -= 1
    return [candidate for candidate, _ in keep] + promoted


def highlight_terms(query: str) -> tuple[str, ...]:
    """The query's terms as the keyword search sees them (words, CJK runs and trigrams)."""
    terms = keyword_terms(query)
    return terms.words + terms.cjk_grams + terms.cjk_short


def search(
    store: Store, query: str, options: SearchOptions, *, embed_query: EmbedQuery | None, rerank: RerankHook | None = None
) -> list[Hit]:
    """Up to ``options.k`` hits for ``query``, best first.

    ``embed_query`` turns the query into a unit vector of the index's dimension; it is
    needed (and called once) in vector and hybrid modes only. ``rerank`` (the hook after
    fusion) rescores the first max(k, ``rerank.top``) hits, then the best k are kept.

    When the page comes back short (per-file grouping, ``min_score``) the candidate lists
    are deepened: the vector list continues where it stopped (``VectorRanking``), the file
    of each new candidate is looked up without its text, and only the chunks on the final
    page are read. The loop stops as soon as no deeper candidate can change the page.
    """
    if not query.strip():
        raise EdgeEmbedError("the query is empty: give some words to search for")
    if options.uses_vectors and embed_query is None:
        raise ValueError(f"{options.mode} search needs embed_query")
    prefixes = resolve_in_paths(store, options.in_paths)
    filters = {"path_prefixes": prefixes, "globs": options.globs}
    ranking = store.vectors.vector_ranking(embed_query(query), **filters) if options.uses_vectors and embed_query else None
    ceiling = store.keywords.keyword_ceiling(query) if options.mode == "hybrid" else 0.0
    files: dict[int, int] = {}  # chunk id -> file id, for the candidates seen so far
    factor = CANDIDATE_FACTOR if options.mode == "hybrid" else SINGLE_LIST_FACTOR
    wanted = options.k if rerank is None else max(options.k, rerank.top)
    depth = min(max(wanted * factor, MIN_CANDIDATES), MAX_KNN_K)
    while True:
        vector = [(cid, cosine_from_l2(d)) for cid, d in ranking.top(depth)] if ranking else []
        keyword = store.keywords.keyword_search(query, depth, **filters) if options.mode != "vector" else []
        fusion = None if options.mode != "hybrid" else Fusion(ceiling, list_floor(vector, depth), list_floor(keyword, depth))
        candidates = _score(vector, keyword, fusion, options)
        listed = {cid for cid, _ in vector} | {cid for cid, _ in keyword}  # every candidate comes from these
        files.update(store.files.chunk_files(cid for cid in listed if cid not in files))
        candidates = [c for c in candidates if c.chunk_id in files]  # a chunk deleted meanwhile has no file
        if fusion is None:
            page = limit_per_file(candidates, options.per_file, wanted, lambda c: files[c.chunk_id])
        else:
            page = agreeing_page(candidates, vector, keyword, options.per_file, wanted, files.get)
        if len(page) == wanted or depth >= MAX_KNN_K or not _deeper_can_add(vector, keyword, depth, options):
            hits = _hits(store, page, fusion)  # records (texts) are read for the page only
            return hits if rerank is None else rerank(query, hits)[: options.k]
        depth = min(depth * DEEPEN_FACTOR, MAX_KNN_K)


def _deeper_can_add(
    vector: list[tuple[int, float]], keyword: list[tuple[int, float]], depth: int, options: SearchOptions
) -> bool:
    """Whether deeper lists could bring a new result: some list was full and, under
    ``min_score``, its last (lowest) score still passed; the scored list decides that."""
    scored = keyword if options.mode == "keyword" else vector
    if options.min_score is not None:
        return len(scored) >= depth and scored[-1][1] >= options.min_score
    return max(len(vector), len(keyword)) >= depth


def resolve_in_paths(store: Store, in_paths: Sequence[str | Path]) -> tuple[str, ...]:
    """``--in`` paths spelled like stored paths (``as_stored``); each must exist and overlap a root."""
    if not in_paths:
        return ()
    roots = store.files.root_paths()
    resolved = []
    for given in in_paths:
        if not Path(given).expanduser().exists():
            raise EdgeEmbedError(
                f"unknown path {given}: it does not exist", param="in_paths",
                hint="{in_paths} takes files or folders of the index",
            )
        path = as_stored(given, roots)
        if not any(under_prefix(path, root) or under_prefix(root, path) for root in roots):
            raise EdgeEmbedError(
                f"unknown path {given}: it is not in an indexed folder", param="in_paths",
                hint="{in_paths} takes files or folders of the index; {status} to list them",
            )
        resolved.append(path)
    return tuple(resolved)


def _score(
    vector: list[tuple[int, float]], keyword: list[tuple[int, float]], fusion: Fusion | None, options: SearchOptions
) -> list[_Candidate]:
    """The candidates in final order with the mode's score, those under min_score removed."""
    if fusion is not None:
        candidates = fuse(vector, keyword, fusion)
    else:
        candidates = _single_list(vector if options.mode == "vector" else keyword, options.mode)
    if options.min_score is None:
        return candidates
    return [c for c in candidates if _passes(c, options.mode, options.min_score)]


def _single_list(ranked: list[tuple[int, float]], mode: Mode) -> list[_Candidate]:
    """One list's order and score as they are (cosine or BM25), ranks kept for --explain."""
    candidates = []
    for rank, (chunk_id, score) in enumerate(ranked, 1):
        position = ListRank(rank, score)
        if mode == "vector":
            candidates.append(_Candidate(chunk_id, score, position, None))
        else:
            candidates.append(_Candidate(chunk_id, score, None, position))
    return candidates


def _passes(candidate: _Candidate, mode: Mode, min_score: float) -> bool:
    """min_score against BM25 in keyword mode, else against the cosine (none: dropped)."""
    if mode == "keyword":
        return candidate.score >= min_score
    return candidate.vector is not None and candidate.vector.score >= min_score


def _hits(store: Store, candidates: list[_Candidate], fusion: Fusion | None) -> list[Hit]:
    """Attach the chunk records; a chunk deleted by a concurrent re-index is skipped."""
    records = store.files.chunks_by_id(c.chunk_id for c in candidates)
    return [
        Hit(records[c.chunk_id], c.score, c.vector, c.keyword, fusion=fusion) for c in candidates if c.chunk_id in records
    ]
