"""Test models for edge-embed: tiny real GGUF files and a numpy reference of their output.

Tests and benchmark scripts import this, so it ships with the package (it needs only
``gguf`` and ``numpy``; quantizing a shape-true model also imports ``llama_cpp``).
"""

from edge_embed.testing.bert import TinyBert, write_tiny_bert
from edge_embed.testing.gguf_builder import (
    SHAPE_TRUE_CONFIGS,
    TinyModel,
    write_shape_true_qwen3,
    write_tiny_qwen3,
    write_tiny_qwen3_quantized,
)
from edge_embed.testing.reference import EOS_ID, EOS_TEXT, Qwen3Config
from edge_embed.testing.reranker import TinyReranker, write_tiny_qwen3_reranker

__all__ = [
    "EOS_ID",
    "EOS_TEXT",
    "SHAPE_TRUE_CONFIGS",
    "Qwen3Config",
    "TinyBert",
    "TinyModel",
    "TinyReranker",
    "write_shape_true_qwen3",
    "write_tiny_bert",
    "write_tiny_qwen3",
    "write_tiny_qwen3_quantized",
    "write_tiny_qwen3_reranker",
]
