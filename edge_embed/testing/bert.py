"""A tiny BERT-family (bge / MiniLM style) GGUF embedding model and its numpy reference.

edge-embed must run any GGUF embedding model, not only Qwen3: an encoder that wants
``[CLS] text [SEP]`` around every input, WordPiece tokens and the pooling its file
declares. ``write_tiny_bert`` writes such a model (architecture ``bert``, 2 layers, 2
heads, 64 wide so that a 32-dim MRL cut is a real cut; ~0.4 MB) the way llama.cpp's
``convert_hf_to_gguf.py`` writes bge-small, and the functions below recompute in float64
what llama.cpp should return for it, without asking llama.cpp: a WordPiece tokenizer
working on the Hugging Face form of the vocabulary (``##`` continuation pieces; the GGUF
holds llama.cpp's phantom-space form instead), and the post-LayerNorm encoder of
``llama.cpp/src/models/bert.cpp``: token + token-type(0) + position embeddings,
LayerNorm, bidirectional multi-head attention with biases, residual + LayerNorm, GELU
feed-forward, residual + LayerNorm; then pooling and L2 normalisation.

Weights are a dict keyed by GGUF tensor name holding row-major ``(out, in)`` float32
arrays, exactly what the file holds.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from gguf import GGUFWriter, LlamaFileType, TokenType

from edge_embed.testing.gguf_builder import POOLING_TYPES, finish_gguf, write_transformer_shape

ARCH = "bert"
TINY_BERT_NAME = "bge tiny test"
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
PAD_ID, UNK_ID, CLS_ID, SEP_ID, MASK_ID = range(len(SPECIAL_TOKENS))
"""Not BERT's usual 0/100/101/102/103: llama.cpp falls back to those ids when the GGUF
lacks a key, so ids it can only have read from the file prove the keys are honoured."""
WORD_PIECES = (
    "hello", "world", "the", "quick", "brown", "fox", "jump", "over", "lazy", "dog",
    "a", "an", "how", "do", "i", "rotate", "key", "api", "search", "query", "document",
    "number", "long", "input", "word", "embed", "model", "text", "short", "un", "know",
    "mat", "##ry", "##osh", "##ka", "##know", "##s", "##ed", "##ing", "##n", "##ding", "##er",
    ".", ",", "!", "?", "'", "-",
    *"0123456789", *(f"##{digit}" for digit in "0123456789"),
)
CONTINUATION = "##"
PHANTOM_SPACE = "\u2581"
POOLINGS = ("mean", "cls", "last")


@dataclass(frozen=True)
class BertConfig:
    """The hyperparameters of the forward pass (mirrors the GGUF ``bert.*`` keys)."""

    n_layer: int = 2
    n_embd: int = 64
    n_head: int = 2
    n_ff: int = 128
    n_vocab: int = len(SPECIAL_TOKENS) + len(WORD_PIECES)
    context_length: int = 512
    n_token_types: int = 2
    norm_eps: float = 1e-12

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head


TINY_BERT_CONFIG = BertConfig()


@dataclass(frozen=True)
class TinyBert:
    """A tiny BERT GGUF on disk plus what the reference needs to predict llama.cpp's output."""

    path: Path
    config: BertConfig
    weights: dict[str, np.ndarray]
    pooling: str
    cls_id: int = CLS_ID
    sep_id: int = SEP_ID

    def tokenize(self, text: str) -> list[int]:
        """Reference WordPiece ids of ``text``, without [CLS] and [SEP]."""
        return tokenize(text)

    def embed(self, token_ids: Sequence[int]) -> np.ndarray:
        """Reference embedding of the ids as given (pooled per the file, L2-normalised)."""
        return embed(self.weights, self.config, token_ids, self.pooling)


def write_tiny_bert(path: str | Path, *, seed: int = 0, pooling: str = "mean") -> TinyBert:
    """Write the tiny F32 BERT embedding model declaring ``pooling`` and return it."""
    if pooling not in POOLINGS:
        raise ValueError(f"unknown pooling {pooling!r}; choose one of {POOLINGS}")
    path = Path(path)
    config = TINY_BERT_CONFIG
    weights = tiny_bert_weights(config, np.random.default_rng(seed))
    writer = GGUFWriter(path, ARCH)
    write_bert_metadata(writer, config, pooling)
    finish_gguf(writer, weights)
    return TinyBert(path=path, config=config, weights=weights, pooling=pooling)


# ------------------------------------------------------------------ vocabulary
def hf_vocabulary() -> tuple[str, ...]:
    """The vocabulary as Hugging Face's ``vocab.txt`` holds it (id = position)."""
    return (*SPECIAL_TOKENS, *WORD_PIECES)


def gguf_token_text(hf_token: str) -> str:
    """convert_hf_to_gguf's rewrite of a WordPiece token for llama.cpp: word starts get a
    phantom space, ``##`` continuations lose it, ``[SPECIAL]`` tokens stay as they are."""
    if hf_token.startswith("[") and hf_token.endswith("]"):
        return hf_token
    if hf_token.startswith(CONTINUATION):
        return hf_token[len(CONTINUATION):]
    return PHANTOM_SPACE + hf_token


def write_bert_metadata(writer: GGUFWriter, config: BertConfig, pooling: str) -> None:
    """The ``general.*``, ``bert.*`` and ``tokenizer.*`` keys of a converted bge model.

    [CLS] is both the BOS and (for llama.cpp builds older than the CLS -> BOS merge) the
    legacy ``cls_token_id``; [SEP] is the EOS and the separator (llama.cpp's spelling
    ``seperator_token_id``); ``add_bos``/``add_eos`` are true, as the converter derives
    them from the ``[CLS] $A [SEP]`` template of bge's tokenizer.json.
    """
    c = config
    write_transformer_shape(writer, c, name=TINY_BERT_NAME, file_type=LlamaFileType.ALL_F32)
    writer.add_layer_norm_eps(c.norm_eps)
    writer.add_causal_attention(False)
    writer.add_pooling_type(POOLING_TYPES[pooling])
    hf_tokens = hf_vocabulary()
    writer.add_tokenizer_model("bert")
    writer.add_token_list([gguf_token_text(token) for token in hf_tokens])
    writer.add_token_types(
        [TokenType.CONTROL if token in SPECIAL_TOKENS else TokenType.NORMAL for token in hf_tokens]
    )
    writer.add_token_type_count(c.n_token_types)
    writer.add_bos_token_id(CLS_ID)
    writer.add_uint32("tokenizer.ggml.cls_token_id", CLS_ID)
    writer.add_eos_token_id(SEP_ID)
    writer.add_sep_token_id(SEP_ID)
    writer.add_unk_token_id(UNK_ID)
    writer.add_pad_token_id(PAD_ID)
    writer.add_mask_token_id(MASK_ID)
    writer.add_add_bos_token(True)
    writer.add_add_eos_token(True)


# ------------------------------------------------------------------ weights
def tensor_shapes(config: BertConfig) -> Iterator[tuple[str, tuple[int, ...]]]:
    """Every tensor llama.cpp's bert loader wants, numpy shape (out, in), in file order."""
    c = config
    yield "token_embd.weight", (c.n_vocab, c.n_embd)
    yield "token_types.weight", (c.n_token_types, c.n_embd)
    yield "position_embd.weight", (c.context_length, c.n_embd)
    yield "token_embd_norm.weight", (c.n_embd,)
    yield "token_embd_norm.bias", (c.n_embd,)
    for layer in range(c.n_layer):
        prefix = f"blk.{layer}"
        for name in ("attn_q", "attn_k", "attn_v", "attn_output"):
            yield f"{prefix}.{name}.weight", (c.n_embd, c.n_embd)
            yield f"{prefix}.{name}.bias", (c.n_embd,)
        yield f"{prefix}.attn_output_norm.weight", (c.n_embd,)
        yield f"{prefix}.attn_output_norm.bias", (c.n_embd,)
        yield f"{prefix}.ffn_up.weight", (c.n_ff, c.n_embd)
        yield f"{prefix}.ffn_up.bias", (c.n_ff,)
        yield f"{prefix}.ffn_down.weight", (c.n_embd, c.n_ff)
        yield f"{prefix}.ffn_down.bias", (c.n_embd,)
        yield f"{prefix}.layer_output_norm.weight", (c.n_embd,)
        yield f"{prefix}.layer_output_norm.bias", (c.n_embd,)


def tiny_bert_weights(config: BertConfig, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Random float32 weights scaled so every op matters (a test must be able to fail).

    Embedding tables get std 1 (token, type and position all move the sum), matrices std
    1/sqrt(fan_in), norm weights 1 +- 0.2 and every bias std 0.5, so a skipped bias, norm
    or position shows in the result.
    """
    weights = {}
    for name, shape in tensor_shapes(config):
        if name.endswith(".bias"):
            values = 0.5 * rng.standard_normal(shape)
        elif len(shape) == 1:
            values = 1.0 + 0.2 * rng.standard_normal(shape)
        elif name in ("token_embd.weight", "token_types.weight", "position_embd.weight"):
            values = rng.standard_normal(shape)
        else:
            values = rng.standard_normal(shape) / np.sqrt(shape[1])
        weights[name] = values.astype(np.float32)
    return weights


# ------------------------------------------------------------------ tokenizer
def tokenize(text: str) -> list[int]:
    """Reference WordPiece ids of ``text`` (no [CLS]/[SEP]).

    Greedy longest-match-first over the ``##`` vocabulary; a word with no complete
    segmentation becomes one [UNK], as in BERT.
    """
    vocab = _hf_token_ids()
    return [token for word in pre_tokenize(text) for token in wordpiece(word, vocab)]


def pre_tokenize(text: str) -> list[str]:
    """BERT's basic tokenizer as llama.cpp applies it: NFD, lower case, drop control
    characters, split on whitespace, and make every punctuation mark, ASCII symbol and
    CJK ideograph a word of its own. (Accents stay, as combining marks, as in llama.cpp.)"""
    words: list[str] = []
    current = ""
    for char in unicodedata.normalize("NFD", text):
        if char.isspace():
            words.append(current)
            current = ""
        elif char == "\ufffd" or unicodedata.category(char) in ("Cc", "Cf"):
            continue
        elif _is_split_character(char):
            words += [current, char.lower()]
            current = ""
        else:
            current += char.lower()
    words.append(current)
    return [word for word in words if word]


def wordpiece(word: str, vocab: Mapping[str, int]) -> list[int]:
    """One word's pieces: the longest known prefix, then the longest ``##`` piece, ..."""
    pieces: list[int] = []
    start = 0
    while start < len(word):
        for end in range(len(word), start, -1):
            piece = word[start:end] if start == 0 else CONTINUATION + word[start:end]
            if piece in vocab:
                pieces.append(vocab[piece])
                start = end
                break
        else:
            return [UNK_ID]
    return pieces


def _is_split_character(char: str) -> bool:
    category = unicodedata.category(char)
    is_cjk = 0x4E00 <= ord(char) <= 0x9FFF or 0x3400 <= ord(char) <= 0x4DBF or 0xF900 <= ord(char) <= 0xFAFF
    return category.startswith("P") or (ord(char) < 0x7F and category.startswith("S")) or is_cjk


@lru_cache(maxsize=1)
def _hf_token_ids() -> dict[str, int]:
    return {token: index for index, token in enumerate(hf_vocabulary()) if token not in SPECIAL_TOKENS}


# ------------------------------------------------------------------ forward pass
def layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    """LayerNorm over the last axis (ggml_norm, then * weight + bias)."""
    centred = x - x.mean(axis=-1, keepdims=True)
    return centred / np.sqrt(np.mean(centred * centred, axis=-1, keepdims=True) + eps) * weight + bias


def gelu(x: np.ndarray) -> np.ndarray:
    """GELU, tanh approximation: what ggml_gelu computes (HF BERT uses erf; the two differ
    by < 1e-3, and llama.cpp is what this reference predicts)."""
    return 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x**3)))


def bidirectional_attention(q: np.ndarray, k: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Scaled dot-product attention without a causal mask, q/k/v: (n_head, n, d)."""
    scores = q @ k.transpose(0, 2, 1) / np.sqrt(q.shape[-1])
    scores -= scores.max(axis=-1, keepdims=True)
    probs = np.exp(scores)
    probs /= probs.sum(axis=-1, keepdims=True)
    return probs @ v


def self_attention(h: np.ndarray, w: Mapping[str, np.ndarray], prefix: str, cfg: BertConfig) -> np.ndarray:
    """One layer's attention output projection (before the residual add), h: (n, n_embd)."""
    n = h.shape[0]

    def heads(name: str) -> np.ndarray:
        projected = h @ w[f"{prefix}.{name}.weight"].T + w[f"{prefix}.{name}.bias"]
        return projected.reshape(n, cfg.n_head, cfg.head_dim).transpose(1, 0, 2)

    out = bidirectional_attention(heads("attn_q"), heads("attn_k"), heads("attn_v"))
    out = out.transpose(1, 0, 2).reshape(n, cfg.n_embd)
    return out @ w[f"{prefix}.attn_output.weight"].T + w[f"{prefix}.attn_output.bias"]


def feed_forward(h: np.ndarray, w: Mapping[str, np.ndarray], prefix: str) -> np.ndarray:
    """down(gelu(up(h)))."""
    up = gelu(h @ w[f"{prefix}.ffn_up.weight"].T + w[f"{prefix}.ffn_up.bias"])
    return up @ w[f"{prefix}.ffn_down.weight"].T + w[f"{prefix}.ffn_down.bias"]


def hidden_states(weights: Mapping[str, np.ndarray], cfg: BertConfig, token_ids: Sequence[int]) -> np.ndarray:
    """The encoder's output for every token, shape (n, n_embd), float64."""
    n = len(token_ids)
    if n == 0:
        raise ValueError("cannot run the forward pass on zero tokens")
    if n > cfg.context_length:
        raise ValueError(f"{n} tokens are more than the {cfg.context_length} positions the model has")
    w = {name: np.asarray(value, dtype=np.float64) for name, value in weights.items()}
    x = w["token_embd.weight"][np.asarray(token_ids)] + w["token_types.weight"][0] + w["position_embd.weight"][:n]
    x = layer_norm(x, w["token_embd_norm.weight"], w["token_embd_norm.bias"], cfg.norm_eps)
    for layer in range(cfg.n_layer):
        prefix = f"blk.{layer}"
        x = x + self_attention(x, w, prefix, cfg)
        x = layer_norm(x, w[f"{prefix}.attn_output_norm.weight"], w[f"{prefix}.attn_output_norm.bias"], cfg.norm_eps)
        x = x + feed_forward(x, w, prefix)
        x = layer_norm(x, w[f"{prefix}.layer_output_norm.weight"], w[f"{prefix}.layer_output_norm.bias"], cfg.norm_eps)
    return x


def pool(states: np.ndarray, pooling: str) -> np.ndarray:
    """One vector per input: the mean over all tokens ([CLS] and [SEP] included), the
    first ([CLS]) token's state, or the last token's state."""
    if pooling == "mean":
        return states.mean(axis=0)
    if pooling == "cls":
        return states[0]
    if pooling == "last":
        return states[-1]
    raise ValueError(f"unknown pooling {pooling!r}; choose one of {POOLINGS}")


def embed(weights: Mapping[str, np.ndarray], cfg: BertConfig, token_ids: Sequence[int], pooling: str) -> np.ndarray:
    """The model's embedding of ``token_ids`` (as given), pooled and L2-normalised."""
    vector = pool(hidden_states(weights, cfg, token_ids), pooling)
    return vector / np.linalg.norm(vector)
