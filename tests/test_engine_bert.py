"""The engine on a non-Qwen model: a tiny BERT (bge / MiniLM style) against its numpy reference.

Such a model must get its own special tokens ([CLS] text [SEP]), the pooling its GGUF
declares, no Qwen3 query instruction, inputs cut before [SEP], and the whole input in one
micro-batch (llama.cpp refuses a non-causal input split across micro-batches).

A wrong answer must fail the same cosine bar a right one passes, so every "must differ"
check below asserts ``cosine < MIN_COSINE``; llama.cpp agrees with the reference to ~1e-8.
"""

from __future__ import annotations

import dataclasses
import json
import logging

import numpy as np
import pytest
from click.testing import CliRunner

from edge_embed.cli import cli
from edge_embed.modelfile import read_model_info
from edge_embed.runtime.engine import DEFAULT_INSTRUCTION, Embedder
from edge_embed.runtime.plan import ModelShape, RuntimeSettings, make_plan
from edge_embed.testing import TinyBert, write_tiny_bert
from edge_embed.testing.bert import embed, hf_vocabulary

MIN_COSINE = 0.999
MODEL_CONTEXT = 512
LONG_TEXT = "the quick brown fox jumps over the lazy dog " * 70  # 700 tokens


def make_embedder(model: TinyBert, **plan_changes) -> Embedder:
    info = read_model_info(model.path)
    plan = make_plan(ModelShape.from_model_info(info), RuntimeSettings(), gpu=None, offload_supported=False)
    return Embedder(info, dataclasses.replace(plan, **plan_changes))


def reference_document(model: TinyBert, text: str, max_tokens: int | None = None) -> np.ndarray:
    """[CLS] + body + [SEP], the body cut so that the whole fits ``max_tokens``."""
    body = model.tokenize(text)
    if max_tokens is not None:
        body = body[: max_tokens - 2]
    return model.embed([model.cls_id, *body, model.sep_id])


def reference_pooled(model: TinyBert, text: str, pooling: str) -> np.ndarray:
    """The reference of ``text`` pooled another way than the file declares."""
    return embed(model.weights, model.config, [model.cls_id, *model.tokenize(text), model.sep_id], pooling)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / np.linalg.norm(a) / np.linalg.norm(b))


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> TinyBert:
    """MiniLM style: mean pooling declared in ``bert.pooling_type``."""
    return write_tiny_bert(tmp_path_factory.mktemp("bert") / "tiny-bert.gguf")


@pytest.fixture(scope="module")
def embedder(tiny_bert):
    """n_ubatch far below the inputs: the engine must still give each input one micro-batch
    (if it did not, llama.cpp would abort the test process on a non-causal split)."""
    engine = make_embedder(tiny_bert, n_batch=256, n_ubatch=16)
    yield engine
    engine.close()


def test_reference_tokenizer_agrees_with_llama_cpp(embedder, tiny_bert):
    texts = [
        "hello world",
        "The quick brown fox JUMPED over the lazy dog.",
        "matryoshka embedding, unknown words: zebra!",
        "document number 1234 - don't",
        "如何 rotate\tthe\nAPI keys?",
    ]
    for text in texts:
        assert embedder.tokenize(text) == tiny_bert.tokenize(text), text


def test_reference_tokenizer_is_wordpiece(tiny_bert):
    pieces = [hf_vocabulary()[token] for token in tiny_bert.tokenize("Unknown zebra, 42.")]
    assert pieces == ["un", "##know", "##n", "[UNK]", ",", "4", "##2", "."]


def test_model_is_not_treated_as_qwen3(embedder):
    assert embedder.qwen3_format is False
    assert embedder.max_tokens == MODEL_CONTEXT
    assert embedder.special_token_count == 2
    assert embedder.count_tokens("hello world") == 2


def test_document_is_cls_text_sep(embedder, tiny_bert):
    text = "hello world"
    vector = embedder.embed_documents([text])[0]
    assert vector.dtype == np.float32
    assert np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-5)
    assert cosine(vector, reference_document(tiny_bert, text)) >= MIN_COSINE
    assert cosine(vector, tiny_bert.embed(tiny_bert.tokenize(text))) < MIN_COSINE, "[CLS]/[SEP] must be added"


def test_declared_mean_pooling_is_used(embedder, tiny_bert):
    text = "how do i rotate the api keys?"
    vector = embedder.embed_documents([text])[0]
    assert cosine(vector, reference_document(tiny_bert, text)) >= MIN_COSINE
    for other in ("cls", "last"):
        assert cosine(vector, reference_pooled(tiny_bert, text, other)) < MIN_COSINE, other


@pytest.mark.parametrize("pooling", ["cls", "last"])
def test_other_declared_poolings_are_used(tmp_path, pooling):
    model = write_tiny_bert(tmp_path / f"tiny-bert-{pooling}.gguf", seed=1, pooling=pooling)
    engine = make_embedder(model)
    try:
        text = "the quick brown fox"
        vector = engine.embed_documents([text])[0]
        assert cosine(vector, reference_document(model, text)) >= MIN_COSINE
        assert cosine(vector, reference_pooled(model, text, "mean")) < MIN_COSINE
    finally:
        engine.close()


def test_queries_get_no_instruction(embedder, tiny_bert):
    query = "how do i rotate the api keys?"
    assert embedder.format_query(query) == query
    as_query = embedder.embed_queries([query])[0]
    with_task = embedder.embed_queries([query], instruct="Find code")[0]
    as_document = embedder.embed_documents([query])[0]
    assert np.allclose(as_query, as_document, atol=1e-6)
    assert np.allclose(with_task, as_document, atol=1e-6)
    assert cosine(as_query, reference_document(tiny_bert, query)) >= MIN_COSINE
    instructed = reference_document(tiny_bert, f"Instruct: {DEFAULT_INSTRUCTION}\nQuery:{query}")
    assert cosine(as_query, instructed) < MIN_COSINE


def test_batch_of_mixed_lengths_equals_one_at_a_time(embedder, tiny_bert):
    texts = [f"document number {i} " + "long input words " * (i * 7 % 30) for i in range(20)]
    decodes_before = embedder.stats.decodes
    batched = embedder.embed_documents(texts)
    assert embedder.stats.decodes - decodes_before < len(texts), "inputs must share decodes"
    singles = np.vstack([embedder.embed_documents([text]) for text in texts])
    for text, row, single in zip(texts, batched, singles):
        assert cosine(row, single) >= MIN_COSINE
        assert cosine(row, reference_document(tiny_bert, text)) >= MIN_COSINE


def test_input_over_model_context_is_cut_before_sep(embedder, tiny_bert, caplog):
    assert len(tiny_bert.tokenize(LONG_TEXT)) > MODEL_CONTEXT
    truncated_before = embedder.stats.truncated
    with caplog.at_level(logging.WARNING, logger="edge_embed"):
        vector = embedder.embed_documents([LONG_TEXT])[0]
    assert "longer than the context" in caplog.text
    assert embedder.stats.truncated - truncated_before == 1
    assert cosine(vector, reference_document(tiny_bert, LONG_TEXT, max_tokens=MODEL_CONTEXT)) >= MIN_COSINE


def test_cut_input_still_ends_with_sep(tmp_path):
    """With last-token pooling the final token *is* the embedding: it must be [SEP]."""
    model = write_tiny_bert(tmp_path / "tiny-bert-last.gguf", pooling="last")
    engine = make_embedder(model)
    try:
        vector = engine.embed_documents([LONG_TEXT])[0]
        assert cosine(vector, reference_document(model, LONG_TEXT, max_tokens=MODEL_CONTEXT)) >= MIN_COSINE
        cut_after_sep = model.embed([model.cls_id, *model.tokenize(LONG_TEXT)][:MODEL_CONTEXT])
        assert cosine(vector, cut_after_sep) < MIN_COSINE
    finally:
        engine.close()


def test_mrl_truncates_then_renormalises(embedder, tiny_bert):
    text = "matryoshka embedding model"
    vector = embedder.embed_documents([text], dims=32)[0]
    full = reference_document(tiny_bert, text)
    assert vector.shape == (32,)
    assert np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-5)
    assert cosine(vector, full[:32] / np.linalg.norm(full[:32])) >= MIN_COSINE


def test_cli_embed_matches_reference(tiny_bert, tmp_path, monkeypatch):
    monkeypatch.chdir(tiny_bert.path.parent)
    monkeypatch.setenv("EDGE_EMBED_DB", str(tmp_path / "index.db"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("EDGE_EMBED_MODEL", raising=False)
    runner = CliRunner()
    document = runner.invoke(cli, ["embed", "--model", "tiny-bert.gguf", "hello world"], catch_exceptions=False)
    assert document.exit_code == 0, document.output
    query = runner.invoke(cli, ["embed", "--model", "tiny-bert.gguf", "--query", "hello world"], catch_exceptions=False)
    assert query.exit_code == 0, query.output
    [vector] = json.loads(document.output)
    assert len(vector) == tiny_bert.config.n_embd
    assert cosine(np.array(vector), reference_document(tiny_bert, "hello world")) >= MIN_COSINE
    assert np.allclose(json.loads(query.output)[0], vector, atol=1e-6)
