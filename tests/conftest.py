"""Shared fixtures: the tiny qwen3 GGUF models every llama.cpp-backed test runs on."""

from __future__ import annotations

import pytest

from edge_embed.testing import TinyModel, write_tiny_qwen3


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> TinyModel:
    """A tiny Qwen3-Embedding GGUF that asks for EOS (``tokenizer.ggml.add_eos_token=true``)."""
    return write_tiny_qwen3(tmp_path_factory.mktemp("models") / "tiny-qwen3-embedding.gguf")


@pytest.fixture(scope="session")
def tiny_model_no_eos(tmp_path_factory: pytest.TempPathFactory) -> TinyModel:
    """The same model without the ``add_eos_token`` key, like older community conversions."""
    return write_tiny_qwen3(
        tmp_path_factory.mktemp("models") / "tiny-qwen3-embedding-no-eos.gguf", add_eos_token=None
    )


@pytest.fixture(scope="session")
def tiny_chat_model(tmp_path_factory: pytest.TempPathFactory) -> TinyModel:
    """A qwen3 chat/generation model: pooling NONE and no "Embedding" in its name."""
    return write_tiny_qwen3(
        tmp_path_factory.mktemp("models") / "tiny-qwen3-chat.gguf", pooling="none", name="Qwen3 tiny chat test"
    )


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the GGUF header cache (and any other cache) out of the user's home."""
    monkeypatch.setenv("EDGE_EMBED_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
