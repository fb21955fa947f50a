"""The reranker engine against the numpy reference of the tiny Qwen3-Reranker."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from edge_embed.errors import EdgeEmbedError, NotAnEmbeddingModel
from edge_embed.modelfile import read_model_info
from edge_embed.runtime.engine import Embedder
from edge_embed.runtime.plan import ModelShape, RuntimeSettings, make_plan
from edge_embed.runtime.reranker import (
    PROMPT_PREFIX,
    PROMPT_SUFFIX,
    Reranker,
    prepare_reranker,
)
from edge_embed.testing.reranker import (
    CARD_PREFIX,
    CARD_SUFFIX,
    write_tiny_qwen3_reranker,
)

MAX_SCORE_DIFFERENCE = 1e-3
QUERY = "how do I rotate the API keys?"
DOCUMENTS = [
    "Rotate the API keys every 90 days with `keys rotate --all`.",
    "The cafeteria opens at noon.",
    "abab about a cab: " * 20,
    "x",
]


def cpu_plan(info, **changes):
    plan = make_plan(ModelShape.from_model_info(info), RuntimeSettings(ctx=1024), gpu=None, offload_supported=False)
    return dataclasses.replace(plan, **changes)


@pytest.fixture(scope="module")
def tiny_reranker(tmp_path_factory):
    return write_tiny_qwen3_reranker(tmp_path_factory.mktemp("models") / "tiny-qwen3-reranker.gguf")


@pytest.fixture(scope="module")
def reranker(tiny_reranker):
    info = read_model_info(tiny_reranker.path)
    engine = Reranker(info, cpu_plan(info, n_batch=256, n_ubatch=64))
    yield engine
    engine.close()


def test_the_engine_prompt_is_the_model_cards(reranker, tiny_reranker):
    assert (PROMPT_PREFIX, PROMPT_SUFFIX) == (CARD_PREFIX, CARD_SUFFIX)
    assert reranker.prompt_tokens(QUERY, DOCUMENTS[0]) == tiny_reranker.prompt_tokens(QUERY, DOCUMENTS[0])


def test_scores_match_the_numpy_reference_at_the_last_token(reranker, tiny_reranker):
    """Packed several to a decode (n_batch 256 < total), each score is P(yes) at its own last token."""
    scores = reranker.score(QUERY, DOCUMENTS)
    expected = [tiny_reranker.score(tiny_reranker.prompt_tokens(QUERY, doc)) for doc in DOCUMENTS]
    assert np.max(np.abs(scores - expected)) < MAX_SCORE_DIFFERENCE
    assert np.ptp(expected) > 0.05, "the documents must score differently, or the test could not fail"


def test_a_document_longer_than_the_context_loses_its_tail_not_the_prompt_end(tiny_reranker):
    info = read_model_info(tiny_reranker.path)
    engine = Reranker(info, cpu_plan(info, n_ctx=400, n_batch=400, n_ubatch=400))
    try:
        long_document = "the key rotation policy " * 100
        tokens = engine.prompt_tokens(QUERY, long_document)
        assert len(tokens) == 400
        assert tokens[-len(engine._suffix):] == engine._suffix
        [score] = engine.score(QUERY, [long_document])
        assert abs(score - tiny_reranker.score(tokens)) < MAX_SCORE_DIFFERENCE
    finally:
        engine.close()


@pytest.mark.parametrize("pooling", ["rank", None], ids=["rank-pooling", "no-pooling-key"])
def test_a_conversion_without_the_classifier_head_is_refused(tmp_path, pooling):
    """Community conversions lack the head, and often the RANK pooling key: both are told what to get."""
    old = write_tiny_qwen3_reranker(tmp_path / "old.gguf", classifier_head=False, pooling=pooling, name="Qwen3-Reranker-0.6B")
    with pytest.raises(EdgeEmbedError, match=r"no classifier head \(cls.output.weight\).*download qwen3-reranker-0.6b"):
        prepare_reranker(str(old.path), RuntimeSettings(force_cpu=True))


def test_an_embedding_model_is_not_a_reranker(tiny_model):
    with pytest.raises(EdgeEmbedError, match="is not a reranker"):
        prepare_reranker(str(tiny_model.path), RuntimeSettings(force_cpu=True))


def test_a_reranker_is_not_an_embedding_model(tiny_reranker):
    info = read_model_info(tiny_reranker.path)
    with pytest.raises(NotAnEmbeddingModel, match="is a reranker"):
        Embedder(info, cpu_plan(info))


def test_the_reranker_plan_has_its_own_context(tiny_reranker):
    handle = prepare_reranker(str(tiny_reranker.path), RuntimeSettings(force_cpu=True, ctx=64))
    assert handle.plan.n_ctx == 2048 and handle.plan.device == "cpu"
