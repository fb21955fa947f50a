"""Reranking the best candidates of a search, and whether to do it by default.

A cross-encoder reranker (Qwen3-Reranker) reads the query and a chunk *together*, so it
judges relevance better than comparing two separately made vectors; it also costs one
model pass per candidate, so only the first ``top`` candidates of the fused list are
rescored. Its verdict is blended with the retrieval order rather than replacing it,
position-aware as in qmd (github.com/tobi/qmd, src/store.ts at dbfd0b4, "Step 7: Blend
RRF position score with reranker score")::

    w       = 0.75 for ranks 1-3, 0.60 for ranks 4-10, 0.40 beyond
    blended = w * (1 / rank) + (1 - w) * rerank_score

where ``rank`` is the candidate's 1-based place in the list before reranking and
``rerank_score`` is P(yes) in 0..1. The top of the retrieval list is protected from a
reranker that disagrees, the tail is left mostly to the reranker.

By default reranking is on only when the device plan puts the whole reranker on a GPU:
on a CPU it costs a model pass per candidate for every query (see docs/benchmarks.md).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from edge_embed.errors import ModelNotFound, Phrase
from edge_embed.results import Hit, RerankInfo

if TYPE_CHECKING:
    from edge_embed.runtime.plan import RuntimeSettings
    from edge_embed.runtime.reranker import RerankerHandle

DEFAULT_RERANK_TOP = 20  # candidates rescored: enough to lift a page of 10, cheap on a GPU
RANK_WEIGHTS = ((3, 0.75), (10, 0.60))  # (last rank, weight on the rank) as in qmd
TAIL_WEIGHT = 0.40
ScoreDocuments = Callable[[str, Sequence[str]], Sequence[float]]


def rank_weight(rank: int) -> float:
    """qmd's weight on the retrieval rank: 0.75 / 0.60 / 0.40 for ranks 1-3 / 4-10 / beyond."""
    return next((weight for last, weight in RANK_WEIGHTS if rank <= last), TAIL_WEIGHT)


def blend(rank: int, rerank_score: float) -> RerankInfo:
    """w * (1 / rank) + (1 - w) * rerank_score, with qmd's position-aware w."""
    weight = rank_weight(rank)
    return RerankInfo(rank, weight, rerank_score, weight / rank + (1.0 - weight) * rerank_score)


@dataclass(frozen=True)
class RerankStep:
    """The hook ``search`` calls after fusion (a ``results.RerankHook``): rescore the first ``top`` hits and reorder."""

    score_documents: ScoreDocuments
    top: int = DEFAULT_RERANK_TOP

    def __call__(self, query: str, hits: Sequence[Hit]) -> list[Hit]:
        """Hits in blended order, best first; each carries its RerankInfo and the blended score.
        Ties keep the retrieval order."""
        scores = self.score_documents(query, [hit.chunk.text for hit in hits])
        reranked = [
            replace(hit, score=info.blended, rerank=info)
            for hit, info in (
                (hit, blend(rank, float(score))) for rank, (hit, score) in enumerate(zip(hits, scores), 1)
            )
        ]
        return sorted(reranked, key=lambda hit: (-hit.score, hit.rerank.rank))


@dataclass(frozen=True)
class RerankDecision:
    """Whether a search reranks, why (one line for ``--explain``, ``doctor`` and /v1/search's
    ``rerank``: a Phrase each face words), and the model."""

    on: bool
    reason: Phrase
    handle: RerankerHandle | None = None


def decide_rerank(
    requested: bool | None,
    runtime: RuntimeSettings,
    reranker: str | None = None,
    *,
    uses_model: bool = True,
    prepare: Callable[[str | None, RuntimeSettings], RerankerHandle] | None = None,
) -> RerankDecision:
    """``requested`` True/False is the user's word; None: on when the reranker fits the GPU whole,
    except for a search that loads no model (keyword mode): that one stays instant.

    Nothing is loaded here: the header (or, not downloaded, the catalog) is enough to plan.
    An explicit request for a reranker that is not downloaded raises ModelNotFound, whose
    hint names the download. ``prepare`` (default: a new handle each time) lets a caller
    share one handle, so one loaded model, among its decisions.
    """
    from edge_embed.runtime.reranker import prepare_reranker

    prepare = prepare or prepare_reranker
    if requested is False:
        return RerankDecision(False, Phrase("off ({no_rerank})"))
    if requested is None and not uses_model:
        return RerankDecision(False, Phrase("off: keyword mode loads no model; {rerank_on} turns it on"))
    if requested:
        handle = prepare(reranker, runtime)
        return RerankDecision(
            True, Phrase("on ({rerank_on}): {label} on {device}", label=handle.label, device=device_words(handle.plan)),
            handle,
        )
    try:
        handle = prepare(reranker, runtime)
    except ModelNotFound as exc:
        return _not_downloaded_decision(exc.model_name, runtime)
    device = device_words(handle.plan)
    if handle.plan.output_on_gpu:
        return RerankDecision(
            True, Phrase("on: {label} fits whole on {device} ({no_rerank} turns it off)", label=handle.label, device=device),
            handle,
        )
    return RerankDecision(
        False, Phrase("off: {label} would run on {device}; {rerank_on} turns it on", label=handle.label, device=device)
    )


def _not_downloaded_decision(name: str, runtime: RuntimeSettings) -> RerankDecision:
    """Off; the reason says whether pulling the reranker would turn it on here."""
    from edge_embed.catalog import get_entry
    from edge_embed.runtime.plan import catalog_shape, plan_for
    from edge_embed.runtime.reranker import reranker_settings

    plan = plan_for(catalog_shape(get_entry(name)), reranker_settings(runtime))
    if plan.output_on_gpu:
        return RerankDecision(False, Phrase("off: {model_name} is not downloaded; {pulling} turns it on here", model_name=name))
    return RerankDecision(
        False,
        Phrase(
            "off: the reranker would run on {device}; after {pulling}, {rerank_on} uses it",
            device=device_words(plan), model_name=name,
        ),
    )


def device_words(plan) -> Phrase:
    """'the GPU (NVIDIA ...)' when every layer is there, else 'the CPU' with the plan's first reason."""
    if plan.output_on_gpu and plan.gpu is not None:
        return Phrase("the GPU ({gpu})", gpu=plan.gpu.name)
    if plan.device != "cpu":
        return Phrase("the CPU in part ({blocks} of {layers} layers on the GPU)", blocks=plan.gpu_blocks, layers=plan.n_layer)
    return Phrase("the CPU ({why})", why=plan.notes[0]) if plan.notes else Phrase("the CPU")
