"""The library façade (edge_embed.api): what the CLI, the server and MCP all call."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import edge_embed
from edge_embed.errors import EdgeEmbedError, ModelNotFound
from edge_embed.api import IndexRequest
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
        summary = index.index([notes], IndexRequest(chunk_tokens=64, overlap=0), model=str(tiny_model.path))
        assert summary.indexed == 2
        hits = index.search("rotate keys", SearchOptions(k=2, mode="keyword"))
        assert hits[0].chunk.relpath == "keys.md"
        vector_hits = index.search("the cat", SearchOptions(k=2, mode="vector"))
        assert {hit.chunk.relpath for hit in vector_hits} == {"keys.md", "pets.txt"}
        assert index.query_model().loaded  # kept warm for the next search
        status = index.status()
        assert status.stats["chunks"] == summary.chunks_added and status.roots[0].path == str(notes.resolve())
        again = index.index([notes])  # the index's own model and settings, nothing changed
        assert again.unchanged == 2 and again.indexed == 0
    assert index._query_model is None  # closed with the block


def test_search_is_search_outcome_s_hits_with_the_same_arguments(monkeypatch):
    """One signature, written once (``api.hits_only``): help() shows it, and the call goes
    through the instance, so a subclass's or a patched ``search_outcome`` answers."""
    import inspect

    shown = inspect.signature(edge_embed.Index.search)
    assert list(shown.parameters) == list(inspect.signature(edge_embed.Index.search_outcome).parameters)
    assert edge_embed.Index.search.__qualname__ == "Index.search"
    index = object.__new__(edge_embed.Index)
    seen = []
    monkeypatch.setattr(index, "search_outcome", lambda text, options=None, **kwargs: seen.append((text, kwargs)) or SimpleNamespace(hits=["hit"]))
    assert index.search("q", rerank=False) == ["hit"] and seen == [("q", {"rerank": False})]


def test_every_face_operation_is_an_index_method(tmp_path, tiny_model, notes):
    """What `status`, `config`, `eval`, MCP `get`, `compact` and `remove` do, as a library user calls it."""
    from edge_embed.evaluate import EvalQuery

    with edge_embed.Index.open(tmp_path / "i.db", CPU) as index:
        index.index([notes], IndexRequest(chunk_tokens=64, overlap=0), model=str(tiny_model.path))
        status = index.status()
        assert status.stats["files"] == 2 and [root.path for root in status.roots] == [str(notes.resolve())]
        assert status.space.vectors == status.stats["chunks"] and status.watch is None
        assert set(status.to_dict()) >= {"space", "roots", "index_age_s", "watch", "chunks"}
        index.set_instruction("Given a question about pets, retrieve the note")
        assert index.store_settings().instruction == "Given a question about pets, retrieve the note"
        index.set_instruction(None)
        assert index.store_settings().instruction is None
        report = index.evaluate([EvalQuery(1, "rotate keys", {"keys.md": 1})], ["keyword"], 2)
        assert report.summary()["keyword"].recall == 1.0 and index._query_model is None  # keyword: no model
        assert index.read_file(str(notes / "keys.md"), 2, 2) == "Rotate the API keys every ninety days."
        assert index.compact().after.vectors == status.space.vectors
        with pytest.raises(EdgeEmbedError, match="is not an indexed folder"):
            index.remove_folder(tmp_path)
        assert index.remove_folder(notes) == str(notes.resolve())
        assert index.status().roots == []


def test_index_refuses_bad_settings_before_creating_the_file(tmp_path, tiny_model, notes):
    """Validation comes before the file: a refused --dims leaves no empty index behind."""
    index = edge_embed.Index.open(tmp_path / "new.db", CPU)
    with pytest.raises(EdgeEmbedError, match="between 32"):
        index.index([notes], IndexRequest(dims=8), model=str(tiny_model.path))
    assert not index.exists


def test_index_names_the_default_model_and_asks_before_failing_on_a_missing_one(tmp_path, notes, monkeypatch):
    """A new index without a model: the face hears the machine's choice, then may fetch it (here: declines)."""
    monkeypatch.delenv("EDGE_EMBED_MODEL", raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))  # nothing downloaded
    chosen, asked = [], []

    def decline(missing) -> bool:
        asked.append(missing.model_name)
        return False

    index = edge_embed.Index.open(tmp_path / "new.db", CPU)
    with pytest.raises(ModelNotFound):
        index.index([notes], on_default=chosen.append, on_missing=decline)
    assert [choice.name for choice in chosen] == asked and asked  # the CPU default, named once
    assert not index.exists


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
