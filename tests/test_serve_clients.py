"""`edge-embed serve` with the clients people already run, unchanged, on 127.0.0.1:

the openai SDK with its default model names, Ollama's Python client, Open WebUI's own
embedding and reranker request code (tests/fixtures/open_webui_clients.py, copied from
its wheel), other servers' ``input_type`` names, token ids that already carry the model's
special tokens, and the /v1/rerank endpoint checked against the numpy reference.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path

import httpx
import numpy as np
import ollama
import openai
import pytest
from fixtures import open_webui_clients as open_webui
from serving import CPU, cosine, local, running_server  # noqa: F401 (local: a fixture)

from edge_embed.server.protocol import DOCUMENT_TYPES, QUERY_TYPES
from edge_embed.server.rerank_api import MAX_DOCUMENTS
from edge_embed.testing import write_tiny_bert, write_tiny_qwen3_reranker

MIN_COSINE = 0.9999
SERVED = "tiny-clients"  # the model file's name: the id the server answers with
TEXTS = [f"chunk {i} about {'cats' if i % 3 else 'rotating the API keys'}" for i in range(100)]
QUERY = "how do I rotate the keys"
DOCUMENTS = ["The cat sat on the mat.", "Rotate the API keys every ninety days.", "Budget for hardware.", "keys keys"]


@pytest.fixture(autouse=True)
def on_the_cpu(monkeypatch):
    monkeypatch.setenv("EDGE_EMBED_CPU", "1")


@pytest.fixture(scope="module")
def model_path(tmp_path_factory, tiny_model) -> Path:
    path = tmp_path_factory.mktemp("clients-model") / f"{SERVED}.gguf"
    shutil.copy(tiny_model.path, path)
    return path


@pytest.fixture(scope="module")
def tiny_reranker(tmp_path_factory):
    return write_tiny_qwen3_reranker(tmp_path_factory.mktemp("clients-reranker") / "tiny-reranker.gguf")


@pytest.fixture(scope="module")
def server(model_path, tiny_reranker):
    with running_server(None, str(model_path), reranker=str(tiny_reranker.path)) as (url, service):
        yield url, service


@pytest.fixture(scope="module")
def sdk(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server[0] + "/v1", api_key="unused", max_retries=0)


# --------------------------------------------------------------------------- model names
@pytest.mark.parametrize("name", ["text-embedding-3-small", "text-embedding-ada-002", None])
def test_client_default_model_names_get_the_served_model(sdk, local, name):
    """OpenAIEmbeddings()/OpenAIEmbedding() and llama.cpp's tests send OpenAI's names."""
    answer = sdk.embeddings.create(input="The quick brown fox", model=name or openai.NOT_GIVEN)
    assert answer.model == SERVED
    assert cosine(answer.data[0].embedding, local.embed(["The quick brown fox"])[0]) >= MIN_COSINE


def test_models_retrieve_answers_in_openais_shape(sdk):
    for name in (SERVED, "text-embedding-3-small"):
        model = sdk.models.retrieve(name)
        assert (model.id, model.object, model.owned_by) == (SERVED, "model", "edge-embed")


def test_strict_model_restores_the_404_on_every_api(model_path, tiny_reranker):
    with running_server(None, str(model_path), strict_model=True, reranker=str(tiny_reranker.path)) as (url, _):
        sdk = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
        with pytest.raises(openai.NotFoundError) as refused:
            sdk.embeddings.create(input="x", model="text-embedding-3-small")
        assert refused.value.body["code"] == "model_not_found" and SERVED in refused.value.body["message"]
        with pytest.raises(openai.NotFoundError):
            sdk.models.retrieve("text-embedding-3-small")
        assert sdk.models.retrieve(f"{SERVED}.gguf").id == SERVED
        assert len(sdk.embeddings.create(input="x", model=SERVED).data) == 1
        client = ollama.Client(host=url)
        assert len(client.embed(model=f"{SERVED}:latest", input="x").embeddings) == 1
        with pytest.raises(ollama.ResponseError) as ollama_refused:
            client.embed(model="nomic-embed-text", input="x")
        assert ollama_refused.value.status_code == 404
        rerank = {"query": "q", "documents": ["d"]}
        assert httpx.post(url + "/v1/rerank", json={**rerank, "model": "bge-reranker"}).status_code == 404
        assert httpx.post(url + "/v1/rerank", json={**rerank, "model": "tiny-reranker"}).status_code == 200


# --------------------------------------------------------------------------- input_type
@pytest.mark.parametrize("field,name", [("input_type", name) for name in QUERY_TYPES + DOCUMENT_TYPES] + [("task", "retrieval.query"), ("task", "retrieval.passage")])
def test_other_servers_input_type_names(server, local, field, name):
    answer = httpx.post(server[0] + "/v1/embeddings", json={"input": [QUERY], field: name})
    assert answer.status_code == 200, answer.text
    vector = answer.json()["data"][0]["embedding"]
    query, document = local.embed([QUERY], input_type="query")[0], local.embed([QUERY])[0]
    expected, other = (query, document) if name in QUERY_TYPES else (document, query)
    assert cosine(vector, expected) >= MIN_COSINE and cosine(vector, other) < MIN_COSINE


def test_an_unknown_input_type_is_a_400_naming_the_accepted_ones(server):
    for field in ("input_type", "task"):
        answer = httpx.post(server[0] + "/v1/embeddings", json={"input": "x", field: "classification"})
        error = answer.json()["error"]
        assert answer.status_code == 400 and error["param"] == field
        assert all(name in error["message"] for name in QUERY_TYPES + DOCUMENT_TYPES)


# --------------------------------------------------------------------------- token ids
def test_qwen3_token_ids_ending_with_eos_are_not_wrapped_again(sdk, tiny_model):
    ids = tiny_model.tokenize("hello tokens")
    plain, wrapped = sdk.embeddings.create(input=[ids, ids + [tiny_model.eos_id]], model=SERVED).data
    reference = tiny_model.embed(ids + [tiny_model.eos_id])
    assert cosine(plain.embedding, reference) >= MIN_COSINE and cosine(wrapped.embedding, reference) >= MIN_COSINE
    usage = sdk.embeddings.create(input=[ids + [tiny_model.eos_id]], model=SERVED).usage
    assert usage.prompt_tokens == len(ids) + 1


def test_bert_token_ids_with_cls_and_sep_are_not_wrapped_again(tmp_path):
    """A client that tokenized with special tokens sends [CLS] ... [SEP]: embedded as is
    (wrapping again gave [CLS] [CLS] ... [SEP] [SEP]: usage +2, cosine 0.88)."""
    bert = write_tiny_bert(tmp_path / "tiny-bert.gguf")
    body = bert.tokenize("the quick brown fox")
    full = [bert.cls_id, *body, bert.sep_id]
    with running_server(None, str(bert.path)) as (url, _):
        sdk = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
        answer = sdk.embeddings.create(input=[full, body], model="tiny-bert", encoding_format="float")
        usage = sdk.embeddings.create(input=[full], model="tiny-bert").usage.prompt_tokens
    reference = bert.embed(full)
    assert cosine(answer.data[0].embedding, reference) >= MIN_COSINE
    assert cosine(answer.data[1].embedding, reference) >= MIN_COSINE  # bare ids get [CLS]/[SEP] once
    assert usage == len(full)


# --------------------------------------------------------------------------- Ollama
def test_ollama_client_embed(server, local):
    client = ollama.Client(host=server[0])
    answer = client.embed(model="qwen3-embedding:0.6b", input=TEXTS[:5])
    assert answer.model == SERVED and len(answer.embeddings) == 5
    for vector, row in zip(answer.embeddings, local.embed(TEXTS[:5])):
        assert cosine(vector, row) >= MIN_COSINE
    assert answer.prompt_eval_count == sum(len(local.engine().tokenize(t)) + 1 for t in TEXTS[:5])
    assert answer.total_duration > 0 and answer.load_duration == 0  # the model was warm
    single = client.embed(model="x", input=TEXTS[0], dimensions=32)
    assert len(single.embeddings[0]) == 32
    assert cosine(single.embeddings[0], local.embed(TEXTS[:1], dims=32)[0]) >= MIN_COSINE


def test_ollama_truncate_is_on_by_default_and_off_refuses(server, local):
    client = ollama.Client(host=server[0])
    long_text = "word " * 2000  # longer than the server's context (256)
    cut = client.embed(model="x", input=long_text)
    assert cut.prompt_eval_count == CPU.ctx
    with pytest.raises(ollama.ResponseError) as refused:
        client.embed(model="x", input=long_text, truncate=False)
    assert refused.value.status_code == 400 and "tokens" in refused.value.error


def test_ollama_legacy_embeddings_tags_and_version(server, local):
    client = ollama.Client(host=server[0])
    legacy = client.embeddings(model="x", prompt="hello world")
    assert cosine(legacy.embedding, local.embed(["hello world"])[0]) >= MIN_COSINE
    models = client.list().models
    assert [model.model for model in models] == [SERVED] and models[0].details.format == "gguf"
    assert models[0].size == server[1].embedder.handle.info.file_size
    version = httpx.get(server[0] + "/api/version").json()
    assert version["version"].count(".") == 2 and "edge_embed" in version


def test_ollama_errors_are_in_ollamas_shape(server):
    for body in ({"input": []}, {"input": "x", "dimensions": 8}, {"input": [[1, 2]]}, {"input": "x", "truncate": "no"}):
        answer = httpx.post(server[0] + "/api/embed", json=body)
        assert answer.status_code == 400 and set(answer.json()) == {"error"}, (body, answer.text)
    assert httpx.post(server[0] + "/api/embeddings", json={"prompt": 3}).status_code == 400


def test_ollama_load_duration_counts_the_load(model_path):
    with running_server(None, str(model_path)) as (url, _):
        client = ollama.Client(host=url)
        first, second = client.embed(model="x", input="a"), client.embed(model="x", input="b")
    assert first.load_duration > 0 and second.load_duration == 0


# --------------------------------------------------------------------------- Open WebUI
def test_open_webui_openai_engine_sync_and_async(server, local, monkeypatch):
    url = server[0] + "/v1"
    for size in (1, 7, 100):
        vectors = open_webui.generate_openai_batch_embeddings("text-embedding-3-small", TEXTS[:size], url, "")
        assert len(vectors) == size
        assert min(cosine(v, row) for v, row in zip(vectors, local.embed(TEXTS[:size]))) >= MIN_COSINE

    async def concurrent_batches() -> list[list[list[float]]]:  # what Open WebUI does with a big upload
        return await asyncio.gather(*(
            open_webui.agenerate_openai_batch_embeddings("text-embedding-3-small", TEXTS[i:i + 10], url, "")
            for i in range(0, 100, 10)
        ))

    batches = asyncio.run(asyncio.wait_for(concurrent_batches(), 120))
    vectors = [vector for batch in batches for vector in batch]
    assert min(cosine(v, row) for v, row in zip(vectors, local.embed(TEXTS))) >= MIN_COSINE
    # RAG_EMBEDDING_PREFIX_FIELD_NAME=input_type with RAG_EMBEDDING_QUERY_PREFIX=search_query
    monkeypatch.setattr(open_webui, "RAG_EMBEDDING_PREFIX_FIELD_NAME", "input_type")
    query = open_webui.generate_openai_batch_embeddings("m", [QUERY], url, "", prefix="search_query")[0]
    assert cosine(query, local.embed([QUERY], input_type="query")[0]) >= MIN_COSINE
    document = asyncio.run(open_webui.agenerate_openai_batch_embeddings("m", [QUERY], url, "", prefix="search_document"))[0]
    assert cosine(document, local.embed([QUERY])[0]) >= MIN_COSINE


def test_open_webui_ollama_engine_sync_and_async(server, local):
    vectors = open_webui.generate_ollama_batch_embeddings("qwen3-embedding", TEXTS[:20], server[0])
    assert min(cosine(v, row) for v, row in zip(vectors, local.embed(TEXTS[:20]))) >= MIN_COSINE
    vectors = asyncio.run(open_webui.agenerate_ollama_batch_embeddings("qwen3-embedding", TEXTS[:20], server[0]))
    assert min(cosine(v, row) for v, row in zip(vectors, local.embed(TEXTS[:20]))) >= MIN_COSINE
    with pytest.raises(Exception, match="Ollama embed error \\(400\\): input\\[0\\] is empty"):
        open_webui.generate_ollama_batch_embeddings("qwen3-embedding", [" "], server[0])


def test_open_webui_external_reranker(server, tiny_reranker):
    reranker = open_webui.ExternalReranker(api_key="", url=server[0] + "/v1/rerank", model="reranker", timeout=60)
    scores = reranker.predict([(QUERY, document) for document in DOCUMENTS])
    expected = [tiny_reranker.score(tiny_reranker.prompt_tokens(QUERY, document)) for document in DOCUMENTS]
    assert np.allclose(scores, expected, atol=1e-4)


# --------------------------------------------------------------------------- /v1/rerank
def test_rerank_is_sorted_and_scored_by_the_reference(server, tiny_reranker):
    expected = [tiny_reranker.score(tiny_reranker.prompt_tokens(QUERY, document)) for document in DOCUMENTS]
    for path in ("/v1/rerank", "/rerank"):
        answer = httpx.post(server[0] + path, json={"model": "any", "query": QUERY, "documents": DOCUMENTS}, timeout=60)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["model"] == "tiny-reranker"
        results = body["results"]
        assert [hit["index"] for hit in results] == sorted(range(len(DOCUMENTS)), key=lambda i: -expected[i])
        assert all(abs(hit["relevance_score"] - expected[hit["index"]]) < 1e-4 for hit in results)
        assert all("document" not in hit for hit in results)


def test_rerank_top_n_and_return_documents(server):
    documents = [{"text": text} for text in DOCUMENTS]  # Jina's/Cohere's object form
    body = {"query": QUERY, "documents": documents, "top_n": 2, "return_documents": True}
    results = httpx.post(server[0] + "/v1/rerank", json=body, timeout=60).json()["results"]
    everything = httpx.post(server[0] + "/v1/rerank", json={"query": QUERY, "documents": DOCUMENTS}).json()["results"]
    assert [hit["index"] for hit in results] == [hit["index"] for hit in everything[:2]]
    assert [hit["document"]["text"] for hit in results] == [DOCUMENTS[hit["index"]] for hit in results]


RERANK_ABUSE = [
    {"query": "", "documents": ["a"]},
    {"query": "q", "documents": []},
    {"query": "q"},
    {"query": "q", "documents": "a"},
    {"query": "q", "documents": [1]},
    {"query": "q", "documents": ["a"], "top_n": 0},
    {"query": "q", "documents": ["a"], "top_n": "2"},
    {"query": "q", "documents": ["a"], "return_documents": "yes"},
    {"query": "q", "documents": ["a"] * (MAX_DOCUMENTS + 1)},
    ["not an object"],
]


@pytest.mark.parametrize("body", RERANK_ABUSE)
def test_rerank_bad_input_is_a_4xx(server, body):
    answer = httpx.post(server[0] + "/v1/rerank", json=body)
    assert answer.status_code == 400 and answer.json()["error"]["message"], answer.text


def test_rerank_loads_on_first_use_and_unloads_with_keep_alive(model_path, tiny_reranker):
    with running_server(None, str(model_path), keep_alive_s=0.3, reranker=str(tiny_reranker.path)) as (url, service):
        assert service._text_reranker is None  # nothing read before the first rerank
        assert httpx.post(url + "/v1/rerank", json={"query": "q", "documents": ["d"]}, timeout=60).status_code == 200
        reranker = service.text_reranker()
        assert reranker.loaded and not service.worker.loaded  # the embedding model is not needed
        deadline = time.monotonic() + 10
        while reranker.loaded and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not reranker.loaded
        assert httpx.post(url + "/v1/rerank", json={"query": "q", "documents": ["d"]}, timeout=60).status_code == 200


def test_rerank_without_a_downloaded_reranker_says_which_pull(model_path, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with running_server(None, str(model_path)) as (url, _):
        answer = httpx.post(url + "/v1/rerank", json={"query": "q", "documents": ["d"]})
    error = answer.json()["error"]
    # not found (was a 400, "your request is wrong"), said without the CLI's `edge-embed pull` (issue 16)
    assert answer.status_code == 404 and error["code"] == "not_found" and error["param"] is None
    assert "not downloaded yet; download qwen3-reranker-0.6b" in error["message"] and "edge-embed" not in error["message"]


def test_serve_passes_strict_model_to_the_server(model_path, monkeypatch):
    """`serve --strict-model` reaches the Service (the server itself is tested above)."""
    from click.testing import CliRunner

    from edge_embed.cli import cli
    from edge_embed.errors import EdgeEmbedError
    from edge_embed.server.app import Service

    seen = []

    def create(*args, **kwargs):
        seen.append(args[-1])
        raise EdgeEmbedError("stopped before listening")

    monkeypatch.setattr(Service, "create", create)
    for flags, strict in (([], False), (["--strict-model"], True)):
        result = CliRunner().invoke(cli, ["serve", "--model", str(model_path), "--port", "0", *flags])
        assert result.exit_code == 2 and "stopped before listening" in result.output
        assert seen.pop() is strict


def test_rerank_on_a_server_with_an_index_shares_the_searches_reranker(model_path, tiny_reranker, tmp_path):
    """One copy of the reranker in memory: /v1/rerank scores with the model searches rerank with."""
    from edge_embed.api import Index
    from edge_embed.api import IndexRequest

    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "keys.md").write_text("Rotate the API keys every ninety days.", encoding="utf-8")
    with Index.open(tmp_path / "index.db", CPU) as index:
        index.index([notes], IndexRequest(chunk_tokens=128, overlap=0), model=str(model_path))
    with running_server(tmp_path / "index.db", None, reranker=str(tiny_reranker.path)) as (url, service):
        ranked = httpx.post(url + "/v1/rerank", json={"query": QUERY, "documents": DOCUMENTS}, timeout=60)
        searched = httpx.post(url + "/v1/search", json={"query": "keys", "mode": "keyword", "rerank": True}, timeout=60)
        assert ranked.status_code == 200 and searched.json()["results"][0]["rerank_score"] is not None
        searches_reranker = service.index.rerank_decision(True, str(tiny_reranker.path), uses_model=False).handle
        assert service.text_reranker().handle is searches_reranker and searches_reranker.loaded


def test_openapi_documents_the_new_endpoints(server):
    paths = httpx.get(server[0] + "/openapi.json").json()["paths"]
    assert {"/v1/rerank", "/rerank", "/api/embed", "/api/embeddings", "/api/tags", "/api/version"} <= set(paths)
    assert any(path.startswith("/v1/models/{") for path in paths)
    assert paths["/v1/rerank"]["post"]["requestBody"]["content"]["application/json"]["schema"]["required"] == ["query", "documents"]
