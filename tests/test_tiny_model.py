"""The test-model kit itself, checked against raw llama.cpp.

Every engine test trusts two things: that the tiny GGUF is a model llama.cpp really
loads as a Qwen3-Embedding, and that the numpy reference predicts llama.cpp's tokens and
vectors. These tests check both, and that the reference can disagree when it should.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import llama_cpp
import numpy as np
import pytest
from gguf import GGMLQuantizationType, GGUFReader

from edge_embed.modelfile import read_model_info
from edge_embed.runtime.engine import decode_one, load_session
from edge_embed.runtime.plan import ModelShape, RuntimeSettings, cpu_plan
from edge_embed.testing import SHAPE_TRUE_CONFIGS, TinyModel
from edge_embed.testing.gguf_builder import TINY_CONFIG, quantize_gguf, tensor_shapes, write_random_f16

TEXTS = {
    "ascii": "Grab a cab, abbot: the abacus is in lab 42!",
    "chinese": "私有的离线语义搜索，中文文本 abc",
    "special_literal": "before <|endoftext|> after",
}
LONG_TEXT = " ".join(["a tabby cat sat on the mat while abe read about zebras"] * 4)
SMALL_UBATCH = 16


def open_llama(model_path: Path, **overrides: int) -> llama_cpp.Llama:
    """Raw llama.cpp in embedding mode, small context: what the engine will wrap."""
    params = {"n_ctx": 512, "n_batch": 512} | overrides
    return llama_cpp.Llama(model_path=str(model_path), embedding=True, verbose=False, **params)


@pytest.fixture(scope="module")
def llm(tiny_model: TinyModel) -> Iterator[llama_cpp.Llama]:
    model = open_llama(tiny_model.path)
    yield model
    model.close()


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def reference_document_vector(model: TinyModel, text: str) -> np.ndarray:
    """What a Qwen3-Embedding document vector should be: text tokens + EOS, last-pooled."""
    return model.embed(model.tokenize(text) + [model.eos_id])


def test_tiny_file_loads_as_a_qwen3_embedding_model(llm: llama_cpp.Llama, tiny_model: TinyModel) -> None:
    assert llm.metadata["general.architecture"] == "qwen3"
    assert "Embedding" in llm.metadata["general.name"]
    assert llm.metadata["qwen3.pooling_type"] == "3"  # LLAMA_POOLING_TYPE_LAST
    assert llm.n_embd() == tiny_model.config.n_embd
    assert llm.n_vocab() == tiny_model.config.n_vocab
    assert llm.token_eos() == tiny_model.eos_id


@pytest.mark.parametrize("text", TEXTS.values(), ids=TEXTS.keys())
def test_llama_tokenizer_agrees_with_reference(llm: llama_cpp.Llama, tiny_model: TinyModel, text: str) -> None:
    assert llm.tokenize(text.encode(), add_bos=False, special=False) == tiny_model.tokenize(text)


def test_literal_eos_text_stays_plain_text_without_special_parsing(
    llm: llama_cpp.Llama, tiny_model: TinyModel
) -> None:
    text = TEXTS["special_literal"].encode()
    assert tiny_model.eos_id not in llm.tokenize(text, add_bos=False, special=False)
    assert tiny_model.eos_id in llm.tokenize(text, add_bos=False, special=True)


def test_eos_is_appended_only_when_the_file_asks_for_it(
    llm: llama_cpp.Llama, tiny_model: TinyModel, tiny_model_no_eos: TinyModel
) -> None:
    assert llm.tokenize(b"abc", add_bos=True) == tiny_model.tokenize("abc") + [tiny_model.eos_id]
    assert GGUFReader(tiny_model_no_eos.path).get_field("tokenizer.ggml.add_eos_token") is None
    no_eos = open_llama(tiny_model_no_eos.path)
    try:
        assert no_eos.tokenize(b"abc", add_bos=True) == tiny_model_no_eos.tokenize("abc")
    finally:
        no_eos.close()


def test_llama_embedding_matches_reference(llm: llama_cpp.Llama, tiny_model: TinyModel) -> None:
    text = TEXTS["ascii"]
    got = np.asarray(llm.embed(text, normalize=True))
    assert cosine(got, reference_document_vector(tiny_model, text)) > 0.9999


def test_llama_embedding_matches_reference_across_ubatches(tiny_model: TinyModel) -> None:
    assert len(tiny_model.tokenize(LONG_TEXT)) > 4 * SMALL_UBATCH
    llm = open_llama(tiny_model.path, n_ubatch=SMALL_UBATCH)
    try:
        got = np.asarray(llm.embed(LONG_TEXT, normalize=True))
    finally:
        llm.close()
    assert cosine(got, reference_document_vector(tiny_model, LONG_TEXT)) > 0.9999


@pytest.mark.parametrize("tensor", ["blk.0.attn_k.weight", "blk.1.ffn_down.weight", "output_norm.weight"])
def test_reference_with_a_shuffled_weight_disagrees_with_llama(
    llm: llama_cpp.Llama, tiny_model: TinyModel, tensor: str
) -> None:
    weights = dict(tiny_model.weights)
    original = weights[tensor]
    weights[tensor] = np.random.default_rng(1).permutation(original.ravel()).reshape(original.shape)
    perturbed = dataclasses.replace(tiny_model, weights=weights)
    got = np.asarray(llm.embed(TEXTS["ascii"], normalize=True))
    assert cosine(got, reference_document_vector(perturbed, TEXTS["ascii"])) < 0.99


def test_streamed_f16_model_quantizes_and_loads(tmp_path: Path) -> None:
    """The shape-true path (stream F16, quantize with llama.cpp) on tiny shapes."""
    f16_path, q8_path = tmp_path / "model-f16.gguf", tmp_path / "model-q8_0.gguf"
    write_random_f16(f16_path, TINY_CONFIG, name="Qwen3-Embedding streamed test", seed=0)
    quantize_gguf(f16_path, q8_path, "Q8_0")
    types = {t.name: t.tensor_type for t in GGUFReader(q8_path).tensors}
    assert types["blk.0.attn_q.weight"] == GGMLQuantizationType.Q8_0
    assert types["blk.0.attn_norm.weight"] == GGMLQuantizationType.F32
    # Through the engine's loader, which avoids AMX kernels on CPUs that fault on them
    # (runtime/amx.py): raw llama.cpp dies of SIGSEGV/SIGILL here on such VMs.
    info = read_model_info(q8_path)
    session = load_session(info, cpu_plan(ModelShape.from_model_info(info), RuntimeSettings(threads=1), 256, 1, ()))
    out = np.empty((1, TINY_CONFIG.n_embd), dtype=np.float32)
    try:
        decode_one(session, [97, 98, 99], out)
    finally:
        session.close()
    vector = out[0] / np.linalg.norm(out[0])
    assert vector.shape == (TINY_CONFIG.n_embd,)
    assert np.isfinite(vector).all()
    assert np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize(
    ("shape", "published_non_embedding"), [("0.6b", 0.44e9), ("4b", 3.6e9), ("8b", 6.95e9)]
)
def test_shape_true_configs_match_published_sizes(shape: str, published_non_embedding: float) -> None:
    """Qwen3-Embedding model cards give the non-embedding parameter counts and 151669 tokens."""
    shapes = dict(tensor_shapes(SHAPE_TRUE_CONFIGS[shape]))
    non_embedding = sum(int(np.prod(s)) for name, s in shapes.items() if name.startswith("blk."))
    assert non_embedding == pytest.approx(published_non_embedding, rel=0.02)
    assert shapes["token_embd.weight"] == (151669, SHAPE_TRUE_CONFIGS[shape].n_embd)
