"""The library façade (edge_embed.api): what the CLI, the server and MCP all call."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import edge_embed
from edge_embed.errors import EdgeEmbedError
from edge_embed.indexer import IndexOptions
from edge_embed.runtime.plan import RuntimeSettings
from edge_embed.search import SearchOptions

CPU = RuntimeSettings(force_cpu=True, ctx=256)


@pytest.fixture(scope="module")
def notes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("notes")
    (root / "keys.md").write_text("# Keys\nRotate the API keys every ninety days.\n", encoding="utf-8")
    (root / "pets.txt").write_text("The cat sat on the mat.\n", encoding="utf-8")
    return root


def test_import_edge_embed_loads_neither_numpy_nor_llama_cpp():
    code = "import sys, edge_embed; edge_embed.Index; print(json.dumps(sorted(m for m in ('numpy', 'llama_cpp', 'apsw') if m in sys.modules)))"
    out = subprocess.run([sys.executable, "-c", "import json; " + code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


def test_index_search_status_through_the_facade(tmp_path, tiny_model, notes):
    with edge_embed.Index.open(tmp_path / "i.db", CPU) as index:
        summary = index.index([notes], IndexOptions(chunk_tokens=64, overlap=0), model=str(tiny_model.path))
        assert summary.indexed == 2
        hits = index.search("rotate keys", SearchOptions(k=2, mode="keyword"))
        assert hits[0].chunk.relpath == "keys.md"
        vector_hits = index.search("the cat", SearchOptions(k=2, mode="vector"))
        assert {hit.chunk.relpath for hit in vector_hits} == {"keys.md", "pets.txt"}
        assert index.query_model().loaded  # kept warm for the next search
        status = index.status()
        assert status["chunks"] == summary.chunks_added and status["roots"][0]["path"] == str(notes.resolve())
        again = index.index([notes])  # the index's own model and settings, nothing changed
        assert again.unchanged == 2 and again.indexed == 0
    assert index._query_model is None  # closed with the block


def test_missing_index_is_a_one_line_error(tmp_path):
    with pytest.raises(EdgeEmbedError, match="no index at"):
        edge_embed.Index.open(tmp_path / "none.db").search("x")


def test_text_embedder_documents_queries_and_dims_match_the_reference(tiny_model):
    embedder = edge_embed.TextEmbedder.open(str(tiny_model.path), CPU)
    assert not embedder.loaded and embedder.native_dim == tiny_model.config.n_embd
    docs = embedder.embed(["hello world", "cats"])
    assert docs.shape == (2, embedder.native_dim)
    expected = tiny_model.embed(tiny_model.tokenize("hello world") + [tiny_model.eos_id])
    assert float(np.dot(docs[0], expected)) >= 0.9999
    query = embedder.embed(["cats"], input_type="query", dims=32)
    assert query.shape == (1, 32) and abs(float(np.linalg.norm(query[0])) - 1) < 1e-5
    assert not np.allclose(query[0], docs[1][:32] / np.linalg.norm(docs[1][:32]))  # the instruction changed it
    with pytest.raises(EdgeEmbedError, match="between 32"):
        embedder.embed(["x"], dims=8)
    with pytest.raises(EdgeEmbedError, match="input_type"):
        embedder.embed(["x"], input_type="passage")
    embedder.close()
    assert not embedder.loaded


def test_text_reranker_ranks_by_the_reference_score(tmp_path):
    from edge_embed.testing import write_tiny_qwen3_reranker

    tiny = write_tiny_qwen3_reranker(tmp_path / "tiny-reranker.gguf")
    documents = ["The cat sat on the mat.", "Rotate the API keys every ninety days.", "Budget for hardware."]
    expected = [tiny.score(tiny.prompt_tokens("rotate keys", document)) for document in documents]
    reranker = edge_embed.TextReranker.open(str(tiny.path), RuntimeSettings(force_cpu=True))
    try:
        ranked = reranker.rank("rotate keys", documents)
        assert [hit.index for hit in ranked] == sorted(range(3), key=lambda i: -expected[i])
        assert np.allclose([hit.score for hit in ranked], sorted(expected, reverse=True), atol=1e-4)
        assert reranker.rank("rotate keys", documents, top_n=1) == ranked[:1]
        assert reranker.rank("rotate keys", []) == []
        with pytest.raises(EdgeEmbedError, match="empty query"):
            reranker.rank("  ", documents)
    finally:
        reranker.close()
    assert not reranker.loaded
