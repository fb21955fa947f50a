"""What a search answers: hits and the arithmetic ``--explain`` shows about them.

These types sit in their own module so that the modules that make, reorder and show hits
import them one way: ``search`` makes hits, ``rerank`` reorders them, ``render``, the
server and ``api`` pass them on, and none of those has to import another to name a
``Hit`` (``search`` and ``rerank`` once imported each other for their types, issue 16).
Nothing here loads numpy, SQLite or a model: ``query`` answered by a server builds hits
from JSON with this module alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:  # records only: the store's SQLite side stays unloaded
    from edge_embed.errors import Phrase
    from edge_embed.store import ChunkRecord


@dataclass(frozen=True)
class ListRank:
    """Where a chunk stood in one ranked list: 1-based rank and that list's own score."""

    rank: int
    score: float  # cosine similarity for the vector list, BM25 (higher = better) for keyword


@dataclass(frozen=True)
class Fusion:
    """How one query's hybrid scores were made: score = vector term + keyword term.

    The vector term is the cosine; the keyword term is BM25 / ``keyword_ceiling``. A chunk
    missing from a list gets that list's floor instead (see ``edge_embed.search``).
    """

    keyword_ceiling: float  # the most BM25 any chunk could reach for the query (0: no words)
    vector_floor: float = 0.0  # cosine given to a chunk the vector list did not return
    keyword_floor: float = 0.0  # BM25 given to a chunk the keyword list did not return

    def vector_term(self, position: ListRank | None) -> float:
        """The cosine where the vector list has the chunk, else its floor."""
        return self.vector_floor if position is None else position.score

    def keyword_term(self, position: ListRank | None) -> float:
        """BM25 (or the floor) over the ceiling: 0..1; 0 when the query has no words to search."""
        bm25 = self.keyword_floor if position is None else position.score
        return bm25 / self.keyword_ceiling if self.keyword_ceiling > 0 else 0.0

    def score(self, vector: ListRank | None, keyword: ListRank | None) -> float:
        """The hybrid score of a chunk at these places in the two lists (None: not in it)."""
        return self.vector_term(vector) + self.keyword_term(keyword)


@dataclass(frozen=True)
class RerankInfo:
    """How one hit's final score came about (``--explain`` shows it)."""

    rank: int  # 1-based place before reranking
    weight: float  # on the rank's score 1/rank
    rerank_score: float  # the reranker's P(yes)
    blended: float

    @property
    def position_score(self) -> float:
        return 1.0 / self.rank


@dataclass(frozen=True)
class Hit:
    """One result: the chunk, its final score, and what --explain shows about it.

    ``score`` is the cosine in vector mode, BM25 in keyword mode and the fused score in
    hybrid, whose arithmetic ``fusion`` holds (None in the other modes), or, reranked, the
    blend of rank and reranker score (``rerank``, see edge_embed.rerank).
    ``vector`` / ``keyword`` are None when that list did not run or did not contain the chunk.
    """

    chunk: ChunkRecord
    score: float
    vector: ListRank | None = None
    keyword: ListRank | None = None
    rerank: RerankInfo | None = None
    fusion: Fusion | None = None


@dataclass(frozen=True)
class SearchOutcome:
    """A search's hits with what the faces show beside them: why it reranked or not
    (``--explain``) and how fresh the index was (``index_age_s``, None: no files yet)."""

    hits: list[Hit]
    rerank_reason: Phrase  # each face words it (errors.Phrase)
    index_age_s: float | None


class RerankHook(Protocol):
    """What ``search`` calls after fusion (``rerank.RerankStep`` is one): a hook typed here,
    so that search need not import the reranking module to name it."""

    @property
    def top(self) -> int:
        """How many of the first hits the hook rescores; search fetches at least that many."""
        ...

    def __call__(self, query: str, hits: Sequence[Hit]) -> list[Hit]:
        """The hits reordered, best first."""
        ...
