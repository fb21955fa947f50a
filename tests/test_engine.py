"""The embedding engine against the independent numpy reference of the tiny Qwen3 model."""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import pytest

from edge_embed.errors import EdgeEmbedError, NotAnEmbeddingModel
from edge_embed.modelfile import read_model_info
from edge_embed.runtime import engine as engine_module
from edge_embed.runtime.engine import DEFAULT_INSTRUCTION, Embedder, truncate_and_normalize
from edge_embed.runtime.loader import prepare_model
from edge_embed.runtime.plan import ModelShape, RuntimeSettings, make_plan
from edge_embed.testing import write_tiny_bert, write_tiny_qwen3
from edge_embed.testing.gguf_builder import IM_END_TEXT

MIN_COSINE = 0.999


def make_embedder(model, **plan_changes) -> Embedder:
    info = read_model_info(model.path)
    plan = make_plan(ModelShape.from_model_info(info), RuntimeSettings(), gpu=None, offload_supported=False)
    return Embedder(info, dataclasses.replace(plan, **plan_changes))


def reference_document(model, text: str, max_tokens: int | None = None) -> np.ndarray:
    tokens = model.tokenize(text)
    if max_tokens is not None:
        tokens = tokens[: max_tokens - 1]
    return model.embed(tokens + [model.eos_id])


@pytest.fixture(scope="module")
def embedder(tiny_model):
    engine = make_embedder(tiny_model, n_ctx=1024, n_batch=256, n_ubatch=64)
    yield engine
    engine.close()


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / np.linalg.norm(a) / np.linalg.norm(b))


def test_document_is_raw_text_plus_eos(embedder, tiny_model):
    vector = embedder.embed_documents(["The quick brown fox jumps over the lazy dog."])[0]
    assert vector.dtype == np.float32
    assert np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-5)
    assert cosine(vector, reference_document(tiny_model, "The quick brown fox jumps over the lazy dog.")) >= MIN_COSINE
    without_eos = tiny_model.embed(tiny_model.tokenize("The quick brown fox jumps over the lazy dog."))
    assert cosine(vector, without_eos) < 0.99, "the EOS token must change the embedding"


def test_query_gets_the_qwen3_instruction(embedder, tiny_model):
    query = "how do I rotate the API keys?"
    vector = embedder.embed_queries([query])[0]
    expected_text = f"Instruct: {DEFAULT_INSTRUCTION}\nQuery:{query}"
    assert cosine(vector, reference_document(tiny_model, expected_text)) >= MIN_COSINE
    custom = embedder.embed_queries([query], instruct="Find code")[0]
    assert cosine(custom, reference_document(tiny_model, f"Instruct: Find code\nQuery:{query}")) >= MIN_COSINE


def test_batched_equals_one_at_a_time(embedder, tiny_model):
    texts = [f"document number {i} " + "words " * (i * 7 % 40) for i in range(25)]
    batched = embedder.embed_documents(texts)
    decodes_before = embedder.stats.decodes
    singles = np.vstack([embedder.embed_documents([text]) for text in texts])
    assert embedder.stats.decodes - decodes_before == len(texts)
    for text, row, single in zip(texts, batched, singles):
        assert cosine(row, single) >= MIN_COSINE
        assert cosine(row, reference_document(tiny_model, text)) >= MIN_COSINE


def test_packing_uses_fewer_decodes_than_inputs(embedder):
    before = embedder.stats.decodes
    embedder.embed_documents(["short text"] * 20)
    assert embedder.stats.decodes - before == 1


def test_input_longer_than_micro_batch_and_budget(embedder, tiny_model):
    text = "long input " * 60  # 660 tokens: over n_ubatch (64) and the packing budget (256)
    vector = embedder.embed_documents([text])[0]
    assert cosine(vector, reference_document(tiny_model, text)) >= MIN_COSINE


def test_chinese_input(embedder, tiny_model):
    text = "如何轮换API密钥？请参阅安全文档。"
    assert cosine(embedder.embed_documents([text])[0], reference_document(tiny_model, text)) >= MIN_COSINE


def test_mrl_truncates_then_renormalises(embedder, tiny_model):
    text = "matryoshka representation learning"
    vector = embedder.embed_documents([text], dims=32)[0]
    full = reference_document(tiny_model, text)
    expected = full[:32] / np.linalg.norm(full[:32])
    assert vector.shape == (32,)
    assert np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-5)
    assert cosine(vector, expected) >= MIN_COSINE


@pytest.mark.parametrize("dims", [0, 31, 65, -1])
def test_mrl_dimension_out_of_range_is_refused(embedder, dims):
    with pytest.raises(EdgeEmbedError, match="dims must be between 32 and 64") as refused:
        embedder.embed_documents(["x"], dims=dims)
    assert refused.value.param == "dims" and "--dims" not in str(refused.value)


def test_gguf_without_add_eos_token_still_gets_eos(tiny_model_no_eos):
    engine = make_embedder(tiny_model_no_eos, n_ctx=512, n_batch=256, n_ubatch=64)
    try:
        text = "older community conversions lack the flag"
        vector = engine.embed_documents([text])[0]
        assert cosine(vector, reference_document(tiny_model_no_eos, text)) >= MIN_COSINE
    finally:
        engine.close()


def test_qwen3_gets_endoftext_found_by_its_text_whatever_eos_the_gguf_declares(tmp_path, caplog):
    """Conversions made before llama.cpp PR #14314 declare <|im_end|> as EOS; Qwen3-Embedding
    pools <|endoftext|>, so that one is appended, with a warning about the file."""
    model = write_tiny_qwen3(tmp_path / "im-end-eos.gguf", declared_eos=IM_END_TEXT)
    declared = read_model_info(model.path).eos_token_id
    assert declared != model.eos_id
    with caplog.at_level(logging.WARNING, logger="edge_embed"):
        engine = make_embedder(model, n_ctx=256, n_batch=256, n_ubatch=64)
    try:
        text = "older conversions declare the chat end token"
        vector = engine.embed_documents([text])[0]
        assert cosine(vector, reference_document(model, text)) >= MIN_COSINE
        assert cosine(vector, model.embed(model.tokenize(text) + [declared])) < 0.99
    finally:
        engine.close()
    assert f"declares {IM_END_TEXT} ({declared}) as EOS" in caplog.text
    assert f"pools <|endoftext|> ({model.eos_id})" in caplog.text


def test_no_eos_warning_when_the_gguf_declares_endoftext(tiny_model, caplog):
    with caplog.at_level(logging.WARNING, logger="edge_embed"):
        make_embedder(tiny_model, n_ctx=256, n_batch=256, n_ubatch=64).close()
    assert "EOS" not in caplog.text


def test_input_over_context_is_cut_before_the_eos(tiny_model, caplog):
    engine = make_embedder(tiny_model, n_ctx=128, n_batch=128, n_ubatch=64)
    try:
        text = "x" * 400
        with caplog.at_level(logging.WARNING, logger="edge_embed"):
            vector = engine.embed_documents([text])[0]
        assert "longer than the context" in caplog.text
        assert engine.stats.truncated == 1
        assert cosine(vector, reference_document(tiny_model, text, max_tokens=128)) >= MIN_COSINE
        cut_without_eos = tiny_model.embed(tiny_model.tokenize(text)[:128])
        assert cosine(vector, cut_without_eos) < 0.99
    finally:
        engine.close()


def test_user_text_cannot_inject_special_tokens(embedder, tiny_model):
    text = "before <|endoftext|> after"
    tokens = embedder.tokenize(text)
    assert tiny_model.eos_id not in tokens
    assert tokens == tiny_model.tokenize(text)
    assert cosine(embedder.embed_documents([text])[0], reference_document(tiny_model, text)) >= MIN_COSINE


@pytest.mark.parametrize("text", ["", "   ", "\n\t"])
def test_empty_text_is_refused(embedder, text):
    with pytest.raises(EdgeEmbedError, match="empty"):
        embedder.embed_documents(["fine", text])


def test_count_tokens_excludes_the_eos(embedder, tiny_model):
    assert embedder.count_tokens("hello") == len(tiny_model.tokenize("hello"))
    assert embedder.special_token_count == 1


@pytest.mark.parametrize("writer", [write_tiny_qwen3, write_tiny_bert], ids=["qwen3", "bert"])
def test_the_vocabulary_alone_counts_as_the_loaded_model(tmp_path, writer):
    """Indexing through an embedding server chunks with ``VocabularyOnly`` (no weights):
    its counts and the special tokens around an input must be the Embedder's."""
    model = writer(tmp_path / "tiny.gguf")
    whole = make_embedder(model)
    counter = engine_module.VocabularyOnly(read_model_info(model.path))
    try:
        for text in ("hello", "Rotate the API keys every 90 days.", "東京都の天気", "<|endoftext|> [SEP]"):
            assert counter.count_tokens(text) == whole.count_tokens(text)
        assert counter.special_token_count == whole.special_token_count
        assert counter.vocabulary.prefix == whole.vocabulary.prefix and counter.vocabulary.suffix == whole.vocabulary.suffix
    finally:
        counter.close()
        whole.close()


def test_truncate_and_normalize_handles_zero_rows():
    rows = truncate_and_normalize(np.array([[0.0, 0.0, 0.0], [3.0, 4.0, 12.0]], dtype=np.float32), 2)
    assert np.allclose(rows, [[0.0, 0.0], [0.6, 0.8]])


@pytest.mark.parametrize("pooling", ["none", None])
def test_a_chat_model_is_refused_from_its_header_before_loading(tmp_path, monkeypatch, pooling):
    """Pooling NONE, declared or by default (no pooling key): llama.cpp would return no
    vector, and llama-cpp-python fail with "NULL pointer access"."""
    chat_model = write_tiny_qwen3(tmp_path / "chat.gguf", pooling=pooling, name="Qwen3 tiny chat test")

    def load_weights(*args, **kwargs):
        raise AssertionError("the weights of a chat model must not be loaded")

    monkeypatch.setattr(engine_module, "load_session", load_weights)
    with pytest.raises(NotAnEmbeddingModel, match="not an embedding model: its pooling is NONE") as refused:
        prepare_model(str(chat_model.path), RuntimeSettings(force_cpu=True))
    assert refused.value.pooling == pooling and refused.value.model_name == "Qwen3 tiny chat test"
    assert "\n" not in str(refused.value) and "qwen3-embedding-0.6b" in str(refused.value)
    with pytest.raises(NotAnEmbeddingModel):
        make_embedder(chat_model)


def test_a_chat_model_forced_to_the_qwen3_format_pools_the_last_token(tiny_chat_model):
    info = read_model_info(tiny_chat_model.path)
    plan = make_plan(ModelShape.from_model_info(info), RuntimeSettings(), gpu=None, offload_supported=False)
    engine = Embedder(info, dataclasses.replace(plan, n_ctx=256, n_batch=256, n_ubatch=64), qwen3_format=True)
    try:
        text = "a chat model used as an embedder on purpose"
        assert cosine(engine.embed_documents([text])[0], reference_document(tiny_chat_model, text)) >= MIN_COSINE
    finally:
        engine.close()


def test_a_verbose_llama_elsewhere_does_not_make_the_engine_noisy(tiny_model, capfd):
    """llama-cpp-python's log switch is process-wide and ``Llama(verbose=True)`` turns it on:
    the engine's loads turn it off again, so query output stays clean (stderr compared)."""
    import llama_cpp

    make_embedder(tiny_model).close()  # llama.cpp's one-time set-up is behind us
    llama_cpp.Llama(model_path=str(tiny_model.path), embedding=True, n_ctx=256, verbose=True).close()
    capfd.readouterr()
    make_embedder(tiny_model).close()
    assert "llama_context" not in capfd.readouterr().err


def test_a_model_load_leaves_what_the_process_prints_alone(tiny_model, capfd, monkeypatch, tmp_path):
    """llama-cpp-python's quiet load (``verbose=False``) points sys.stdout, sys.stderr and
    file descriptors 1 and 2 at /dev/null for the whole process while it loads, then puts
    back what it found: another thread's output meanwhile was lost, and a stream another
    thread had swapped in meanwhile was undone (a CliRunner's: `query --json` printed
    nothing while a watcher thread loaded its model). A print during the load stands for
    that other thread. llama.cpp's own log stays quiet through its log switch."""
    import llama_cpp.llama_cpp as lib

    load = lib.llama_model_load_from_file

    def load_while_printing(*args):
        print("printed during the load", flush=True)
        return load(*args)

    make_embedder(tiny_model).close()  # llama.cpp's one-time set-up is behind us
    bert = write_tiny_bert(tmp_path / "tiny-bert.gguf")  # its loader warns about special tokens
    capfd.readouterr()
    monkeypatch.setattr(lib, "llama_model_load_from_file", load_while_printing)
    make_embedder(tiny_model).close()
    make_embedder(bert).close()
    seen = capfd.readouterr()
    assert seen.out.count("printed during the load") == 2
    assert seen.err == "", seen.err
