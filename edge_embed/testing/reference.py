"""An independent numpy reference of the Qwen3-Embedding tokenizer and forward pass.

Tests need to know what llama.cpp *should* return for a model file, without asking
llama.cpp. This module recomputes it from the raw weights in float64: byte-level BPE with
the test vocabulary's single merge, then RMSNorm, per-head q/k RMSNorm, NEOX RoPE, GQA
causal attention, SwiGLU, the final norm, last-token pooling and L2 normalisation.

Weights are a dict keyed by GGUF tensor name (``blk.0.attn_q.weight`` ...) holding numpy
arrays in the row-major ``(out_features, in_features)`` orientation that ``gguf`` writes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from edge_embed.modelfile import Hyperparameters  # field names only: the computation stays independent

N_BYTE_TOKENS = 256
MERGE_PAIR = (ord("a"), ord("b"))
"""The vocabulary's only merge. Two *different letters* keep reference BPE trivial: the
qwen2 pre-tokenizer never splits a run of letters, and 'a' != 'b' means occurrences never
overlap, so BPE equals replacing every byte pair "ab" left to right."""
MERGE_ID = N_BYTE_TOKENS
EOS_ID = N_BYTE_TOKENS + 1
EOS_TEXT = "<|endoftext|>"


@dataclass(frozen=True)
class Qwen3Config(Hyperparameters):
    """The hyperparameters the forward pass needs (the GGUF ``qwen3.*`` keys): the sizes
    every model states, and Qwen3's RoPE base and norm epsilon."""

    rope_freq_base: float = 1e6
    rms_eps: float = 1e-6


@lru_cache(maxsize=1)
def bytes_to_unicode() -> tuple[str, ...]:
    """GPT-2's byte -> printable character table: the texts of the 256 byte tokens."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table: dict[int, str] = {b: chr(b) for b in printable}
    extra = 0
    for b in range(N_BYTE_TOKENS):
        if b not in table:
            table[b] = chr(N_BYTE_TOKENS + extra)
            extra += 1
    return tuple(table[b] for b in range(N_BYTE_TOKENS))


def tokenize(text: str) -> list[int]:
    """Reference token ids of ``text`` (no EOS): one token per UTF-8 byte, "ab" merged.

    Special-token text such as "<|endoftext|>" is tokenized as plain bytes, as llama.cpp
    does when it is not asked to parse special tokens.
    """
    data = text.encode("utf-8")
    ids: list[int] = []
    i = 0
    while i < len(data):
        if data[i : i + 2] == bytes(MERGE_PAIR):
            ids.append(MERGE_ID)
            i += 2
        else:
            ids.append(data[i])
            i += 1
    return ids


def rms_norm(x: np.ndarray, weight: np.ndarray, eps: float) -> np.ndarray:
    """llama.cpp's RMSNorm over the last axis: x / sqrt(mean(x^2) + eps) * weight."""
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * weight


def rope_neox(x: np.ndarray, positions: np.ndarray, base: float) -> np.ndarray:
    """NEOX-style rotary embedding (rotate the two halves of each head), x: (heads, n, d)."""
    half = x.shape[-1] // 2
    inv_freq = base ** (-np.arange(half, dtype=np.float64) * 2.0 / x.shape[-1])
    angles = positions[:, None].astype(np.float64) * inv_freq[None, :]
    cos, sin = np.cos(angles), np.sin(angles)
    first, second = x[..., :half], x[..., half:]
    return np.concatenate([first * cos - second * sin, second * cos + first * sin], axis=-1)


def causal_attention(q: np.ndarray, k: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Scaled dot-product attention with a causal mask; GQA by repeating kv heads.

    q: (n_head, n, d); k, v: (n_head_kv, n, d). Query head h reads kv head h // group,
    which is how ggml broadcasts the kv heads.
    """
    group = q.shape[0] // k.shape[0]
    k = np.repeat(k, group, axis=0)
    v = np.repeat(v, group, axis=0)
    scores = q @ k.transpose(0, 2, 1) / np.sqrt(q.shape[-1])
    n = q.shape[1]
    scores = np.where(np.tril(np.ones((n, n), dtype=bool)), scores, -np.inf)
    scores -= scores.max(axis=-1, keepdims=True)
    probs = np.exp(scores)
    probs /= probs.sum(axis=-1, keepdims=True)
    return probs @ v


def attention_block(h: np.ndarray, w: Mapping[str, np.ndarray], prefix: str, cfg: Qwen3Config) -> np.ndarray:
    """One layer's self-attention output (before the residual add), h: (n, n_embd)."""
    n = h.shape[0]
    positions = np.arange(n)

    def heads(name: str, count: int) -> np.ndarray:
        return (h @ w[f"{prefix}.{name}.weight"].T).reshape(n, count, cfg.head_dim).transpose(1, 0, 2)

    q = rms_norm(heads("attn_q", cfg.n_head), w[f"{prefix}.attn_q_norm.weight"], cfg.rms_eps)
    k = rms_norm(heads("attn_k", cfg.n_head_kv), w[f"{prefix}.attn_k_norm.weight"], cfg.rms_eps)
    v = heads("attn_v", cfg.n_head_kv)
    q = rope_neox(q, positions, cfg.rope_freq_base)
    k = rope_neox(k, positions, cfg.rope_freq_base)
    out = causal_attention(q, k, v).transpose(1, 0, 2).reshape(n, cfg.n_head * cfg.head_dim)
    return out @ w[f"{prefix}.attn_output.weight"].T


def swiglu_block(h: np.ndarray, w: Mapping[str, np.ndarray], prefix: str) -> np.ndarray:
    """The feed-forward: down(silu(gate(h)) * up(h))."""
    gate = h @ w[f"{prefix}.ffn_gate.weight"].T
    up = h @ w[f"{prefix}.ffn_up.weight"].T
    return (gate / (1.0 + np.exp(-gate)) * up) @ w[f"{prefix}.ffn_down.weight"].T


def hidden_states(weights: Mapping[str, np.ndarray], cfg: Qwen3Config, token_ids: Sequence[int]) -> np.ndarray:
    """Final-normed hidden state of every token, shape (n, n_embd), float64."""
    if len(token_ids) == 0:
        raise ValueError("cannot run the forward pass on zero tokens")
    w = {name: np.asarray(value, dtype=np.float64) for name, value in weights.items()}
    x = w["token_embd.weight"][np.asarray(token_ids)]
    for layer in range(cfg.n_layer):
        prefix = f"blk.{layer}"
        x = x + attention_block(rms_norm(x, w[f"{prefix}.attn_norm.weight"], cfg.rms_eps), w, prefix, cfg)
        x = x + swiglu_block(rms_norm(x, w[f"{prefix}.ffn_norm.weight"], cfg.rms_eps), w, prefix)
    return rms_norm(x, w["output_norm.weight"], cfg.rms_eps)


def embed(weights: Mapping[str, np.ndarray], cfg: Qwen3Config, token_ids: Sequence[int]) -> np.ndarray:
    """The Qwen3-Embedding vector of ``token_ids``: last token's state, L2-normalised."""
    last = hidden_states(weights, cfg, token_ids)[-1]
    return last / np.linalg.norm(last)
