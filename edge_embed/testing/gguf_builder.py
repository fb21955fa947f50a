"""Write real qwen3-architecture GGUF files with random weights, for tests and benchmarks.

Tests must run llama.cpp end to end without downloading a model, so ``write_tiny_qwen3``
writes a 2-layer, 64-wide Qwen3-Embedding lookalike (a few hundred KB) together with
its weights, which ``edge_embed.testing.reference`` turns into the expected embeddings.
Benchmarks need files with the *real* shapes (the speed and memory of llama.cpp depend
on shapes, not on trained values), so ``write_shape_true_qwen3`` writes those, streaming
one tensor at a time, and quantizes them with llama.cpp's own quantizer.

The vocabulary is byte-level GPT-2 style: 256 byte tokens, one merge ("a b"), and
``<|endoftext|>`` as the EOS control token, which is what Qwen3-Embedding appends.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from gguf import GGUFWriter, LlamaFileType, PoolingType, TokenType

from edge_embed.testing import reference
from edge_embed.testing.reference import EOS_ID, EOS_TEXT, MERGE_PAIR, Qwen3Config, bytes_to_unicode

ARCH = "qwen3"
IM_END_TEXT = "<|im_end|>"
IM_START_TEXT = "<|im_start|>"
CHAT_MARKERS = (IM_START_TEXT, IM_END_TEXT)  # control tokens of a reranker's chat prompt
CLASSIFIER_TENSOR = "cls.output.weight"  # a reranker's head: the "yes" and "no" rows of the LM head
RERANK_LABELS = ("yes", "no")
TINY_NAME = "Qwen3-Embedding tiny test"
TINY_CONFIG = Qwen3Config(
    n_layer=2, n_embd=64, n_head=4, n_head_kv=2, head_dim=16, n_ff=128, n_vocab=EOS_ID + 1, context_length=4096
)
QWEN3_VOCAB = 151669
SHAPE_TRUE_CONFIGS: dict[str, Qwen3Config] = {
    "0.6b": Qwen3Config(28, 1024, 16, 8, 128, 3072, QWEN3_VOCAB, 32768),
    "4b": Qwen3Config(36, 2560, 32, 8, 128, 9728, QWEN3_VOCAB, 32768),
    "8b": Qwen3Config(36, 4096, 32, 8, 128, 12288, QWEN3_VOCAB, 32768),
}
QUANT_FILE_TYPES = {
    "F16": LlamaFileType.MOSTLY_F16,
    "Q8_0": LlamaFileType.MOSTLY_Q8_0,
    "Q4_K_M": LlamaFileType.MOSTLY_Q4_K_M,
}
POOLING_TYPES = {p.name.lower(): p for p in PoolingType}
SHAPE_TRUE_STD = 0.02
_RANDOM_CHUNK_ELEMENTS = 1 << 24


@dataclass(frozen=True)
class TinyModel:
    """A tiny GGUF on disk plus what the reference needs to predict llama.cpp's output.

    ``weights`` (GGUF tensor name -> float32 array) is exactly what the file holds;
    ``dataclasses.replace(model, weights=...)`` gives a reference for perturbed weights.
    """

    path: Path
    config: Qwen3Config
    weights: dict[str, np.ndarray]
    eos_id: int = EOS_ID

    def tokenize(self, text: str) -> list[int]:
        """Token ids llama.cpp should produce for ``text`` (special=False), without EOS."""
        return reference.tokenize(text)

    def embed(self, token_ids: Sequence[int]) -> np.ndarray:
        """Reference embedding (last-token pooled, L2-normalised, float64) of the ids as given."""
        return reference.embed(self.weights, self.config, token_ids)


def write_tiny_qwen3(
    path: str | Path,
    *,
    seed: int = 0,
    add_eos_token: bool | None = True,
    pooling: str | None = "last",
    name: str = TINY_NAME,
    context_length: int = 4096,
    declared_eos: str = EOS_TEXT,
    omit: Sequence[str] = (),
) -> TinyModel:
    """Write the tiny F32 test model and return it with its weights.

    ``add_eos_token=None`` leaves ``tokenizer.ggml.add_eos_token`` out of the file, as in
    older community conversions; ``pooling=None`` leaves out ``qwen3.pooling_type``;
    ``omit`` leaves out tensors: a file with a valid header that llama.cpp cannot load.
    ``declared_eos`` is the text of the token the file declares as EOS: another than
    ``<|endoftext|>`` (``IM_END_TEXT``, as conversions made before llama.cpp PR #14314
    declare) becomes one more control token, and ``eos_id`` stays ``<|endoftext|>``, the
    token a Qwen3-Embedding vector must be pooled from.
    """
    path = Path(path)
    extra_tokens = 0 if declared_eos == EOS_TEXT else 1
    config = replace(TINY_CONFIG, context_length=context_length, n_vocab=TINY_CONFIG.n_vocab + extra_tokens)
    weights = tiny_weights(config, np.random.default_rng(seed))
    writer = GGUFWriter(path, ARCH)
    write_metadata(
        writer,
        config,
        name=name,
        add_eos_token=add_eos_token,
        pooling=pooling,
        file_type=LlamaFileType.ALL_F32,
        declared_eos=declared_eos,
    )
    weights = {name: array for name, array in weights.items() if name not in omit}
    finish_gguf(writer, weights)
    return TinyModel(path=path, config=config, weights=weights)


def write_tiny_qwen3_quantized(path: str | Path, quant: str = "Q8_0", *, seed: int = 0) -> TinyModel:
    """The tiny model quantized by llama.cpp (Q8_0 by default): the kind of file whose first
    decode reaches llama.cpp's repacked and AMX kernels. ``weights`` stay the F32 originals,
    so the reference is close to, not equal to, what llama.cpp computes."""
    path = Path(path)
    f32_path = path.with_name(path.name + ".f32.tmp")
    try:
        model = write_tiny_qwen3(f32_path, seed=seed)
        quantize_gguf(f32_path, path, quant)
    finally:
        f32_path.unlink(missing_ok=True)
    return replace(model, path=path)


def finish_gguf(writer: GGUFWriter, weights: dict[str, np.ndarray]) -> None:
    """Add the (small, in-memory) tensors after the metadata and write the whole file."""
    for tensor_name, array in weights.items():
        writer.add_tensor(tensor_name, array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def write_shape_true_qwen3(path: str | Path, shape: str, quant: str, seed: int = 0, *, reranker: bool = False) -> Path:
    """Write a random-weight Qwen3-Embedding with the real ``shape`` ("0.6b", "4b", "8b");
    ``reranker``: a Qwen3-Reranker of that shape instead (pooling RANK, the chat markers,
    a yes/no classifier head), as llama.cpp's converter writes one.

    F16 is written directly; Q8_0 and Q4_K_M go through an F16 temporary next to ``path``
    that llama.cpp's quantizer converts (so the quantized layout is llama.cpp's own).
    Weights have std 0.02 so activations stay finite; norms are ones.
    """
    if shape not in SHAPE_TRUE_CONFIGS:
        raise ValueError(f"unknown shape {shape!r}; choose one of {sorted(SHAPE_TRUE_CONFIGS)}")
    if quant not in QUANT_FILE_TYPES:
        raise ValueError(f"unknown quant {quant!r}; choose one of {sorted(QUANT_FILE_TYPES)}")
    path = Path(path)
    config = SHAPE_TRUE_CONFIGS[shape]
    name = f"Qwen3-{'Reranker' if reranker else 'Embedding'} {shape} shape-true random"
    if quant == "F16":
        write_random_f16(path, config, name=name, seed=seed, reranker=reranker)
        return path
    f16_path = path.with_name(path.name + ".f16.tmp")
    try:
        write_random_f16(f16_path, config, name=name, seed=seed, reranker=reranker)
        quantize_gguf(f16_path, path, quant)
    finally:
        f16_path.unlink(missing_ok=True)
    return path


def vocabulary(n_vocab: int, extra_control: Sequence[str] = ()) -> tuple[list[str], list[TokenType]]:
    """Token texts and types: bytes, the merge, EOS and ``extra_control`` (control tokens),
    then unused placeholders."""
    byte_texts = bytes_to_unicode()
    merged = "".join(byte_texts[b] for b in MERGE_PAIR)
    control = [EOS_TEXT, *extra_control]
    tokens = [*byte_texts, merged, *control]
    types = [TokenType.NORMAL] * (len(tokens) - len(control)) + [TokenType.CONTROL] * len(control)
    padding = n_vocab - len(tokens)
    if padding < 0:
        raise ValueError(f"n_vocab {n_vocab} is smaller than the {len(tokens)} tokens the test vocabulary needs")
    tokens += [f"<|placeholder_{i}|>" for i in range(padding)]
    types += [TokenType.UNUSED] * padding
    return tokens, types


def tensor_shapes(config: Qwen3Config) -> Iterator[tuple[str, tuple[int, ...]]]:
    """Every tensor llama.cpp's qwen3 loader wants, numpy shape (out, in), in file order.

    There is no ``output.weight``: llama.cpp ties it to ``token_embd`` when absent, and
    an embedding model never uses it.
    """
    c = config
    yield "token_embd.weight", (c.n_vocab, c.n_embd)
    for layer in range(c.n_layer):
        prefix = f"blk.{layer}"
        yield f"{prefix}.attn_norm.weight", (c.n_embd,)
        yield f"{prefix}.attn_q.weight", (c.n_head * c.head_dim, c.n_embd)
        yield f"{prefix}.attn_k.weight", (c.n_head_kv * c.head_dim, c.n_embd)
        yield f"{prefix}.attn_v.weight", (c.n_head_kv * c.head_dim, c.n_embd)
        yield f"{prefix}.attn_q_norm.weight", (c.head_dim,)
        yield f"{prefix}.attn_k_norm.weight", (c.head_dim,)
        yield f"{prefix}.attn_output.weight", (c.n_embd, c.n_head * c.head_dim)
        yield f"{prefix}.ffn_norm.weight", (c.n_embd,)
        yield f"{prefix}.ffn_gate.weight", (c.n_ff, c.n_embd)
        yield f"{prefix}.ffn_up.weight", (c.n_ff, c.n_embd)
        yield f"{prefix}.ffn_down.weight", (c.n_embd, c.n_ff)
    yield "output_norm.weight", (c.n_embd,)


def tiny_weights(config: Qwen3Config, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Random float32 weights scaled so every op matters (a test must be able to fail).

    Linear layers get std 1/sqrt(fan_in) (unit-scale outputs), embeddings std 1, norm
    weights 1 +- 0.2 so that a wrong or skipped norm changes the result.
    """
    weights = {}
    for name, shape in tensor_shapes(config):
        if len(shape) == 1:
            values = 1.0 + 0.2 * rng.standard_normal(shape)
        elif name == "token_embd.weight":
            values = rng.standard_normal(shape)
        else:
            values = rng.standard_normal(shape) / np.sqrt(shape[1])
        weights[name] = values.astype(np.float32)
    return weights


def write_transformer_shape(writer: GGUFWriter, config, *, name: str, file_type: LlamaFileType) -> None:
    """The keys every architecture's test model shares: name, file type, sizes, heads."""
    writer.add_name(name)
    writer.add_file_type(file_type)
    writer.add_context_length(config.context_length)
    writer.add_embedding_length(config.n_embd)
    writer.add_block_count(config.n_layer)
    writer.add_feed_forward_length(config.n_ff)
    writer.add_head_count(config.n_head)


def write_metadata(
    writer: GGUFWriter,
    config: Qwen3Config,
    *,
    name: str,
    add_eos_token: bool | None,
    pooling: str | None,
    file_type: LlamaFileType,
    declared_eos: str = EOS_TEXT,
    extra_control: Sequence[str] = (),
) -> None:
    """The ``general.*``, ``qwen3.*`` and ``tokenizer.*`` keys of a Qwen3-Embedding GGUF
    (``declared_eos``: see ``write_tiny_qwen3``; ``extra_control``: more control tokens,
    placed after those, such as the chat markers a reranker's prompt needs)."""
    c = config
    write_transformer_shape(writer, c, name=name, file_type=file_type)
    writer.add_head_count_kv(c.n_head_kv)
    writer.add_key_length(c.head_dim)
    writer.add_value_length(c.head_dim)
    writer.add_rope_freq_base(c.rope_freq_base)
    writer.add_layer_norm_rms_eps(c.rms_eps)
    if pooling is not None:
        writer.add_pooling_type(POOLING_TYPES[pooling])
    declared = () if declared_eos == EOS_TEXT else (declared_eos,)
    tokens, types = vocabulary(c.n_vocab, (*declared, *extra_control))
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("qwen2")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges([" ".join(tokens[b] for b in MERGE_PAIR)])
    writer.add_eos_token_id(tokens.index(declared_eos))
    writer.add_bos_token_id(EOS_ID)
    writer.add_pad_token_id(EOS_ID)
    writer.add_add_bos_token(False)
    if add_eos_token is not None:
        writer.add_add_eos_token(add_eos_token)


def write_random_f16(path: Path, config: Qwen3Config, *, name: str, seed: int, reranker: bool = False) -> None:
    """Stream a random F16 model to ``path``, holding one tensor in memory at a time."""
    shapes = [*tensor_shapes(config), *([(CLASSIFIER_TENSOR, (len(RERANK_LABELS), config.n_embd))] if reranker else [])]
    layout = [(tensor_name, shape, np.float32 if len(shape) == 1 else np.float16) for tensor_name, shape in shapes]
    writer = GGUFWriter(path, ARCH)
    write_metadata(
        writer, config, name=name, add_eos_token=not reranker, pooling="rank" if reranker else "last",
        file_type=LlamaFileType.MOSTLY_F16, extra_control=CHAT_MARKERS if reranker else (),
    )
    if reranker:
        writer.add_classifier_output_labels(list(RERANK_LABELS))
    for tensor_name, shape, dtype in layout:
        writer.add_tensor_info(tensor_name, shape, np.dtype(dtype), int(np.prod(shape)) * np.dtype(dtype).itemsize)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    rng = np.random.default_rng(seed)
    for _, shape, dtype in layout:
        if len(shape) == 1:
            writer.write_tensor_data(np.ones(shape, dtype=np.float32))
        else:
            writer.write_tensor_data(random_f16(rng, shape, SHAPE_TRUE_STD))
    writer.close()


def random_f16(rng: np.random.Generator, shape: tuple[int, int], std: float) -> np.ndarray:
    """Normal(0, std) float16 matrix filled in row blocks, so no float32 copy of it all exists."""
    out = np.empty(shape, dtype=np.float16)
    rows = max(1, _RANDOM_CHUNK_ELEMENTS // shape[1])
    for start in range(0, shape[0], rows):
        block = out[start : start + rows]
        block[...] = rng.standard_normal(block.shape, dtype=np.float32) * np.float32(std)
    return out


def quantize_gguf(source: Path, target: Path, quant: str) -> None:
    """Quantize with llama.cpp's ``llama_model_quantize`` (llama_cpp is imported only here)."""
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = int(QUANT_FILE_TYPES[quant])
    params.nthread = os.cpu_count() or 1
    status = llama_cpp.llama_model_quantize(str(source).encode(), str(target).encode(), ctypes.byref(params))
    if status != 0:
        raise RuntimeError(f"llama_model_quantize({source} -> {target}, {quant}) failed with status {status}")
