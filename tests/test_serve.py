"""`edge-embed serve` with real clients on 127.0.0.1: the openai SDK, raw HTTP, the CLI."""

from __future__ import annotations

import concurrent.futures
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest
from click.testing import CliRunner
from serving import CPU, cosine, local, running_server  # noqa: F401 (local: a fixture)

from edge_embed.api import Index, TextEmbedder
from edge_embed.cli import cli
from edge_embed.store import Store
from edge_embed.api import IndexRequest
from edge_embed.server.protocol import MAX_BODY_BYTES, MAX_INPUTS

MIN_COSINE = 0.9999
TEXTS = [f"sentence number {i} about {'cats' if i % 2 else 'API keys'} and more" for i in range(100)]
NOTES = {
    "keys.md": "# Rotating keys\nRotate the API keys every ninety days.\nUse the vault CLI to rotate them.",
    "pets.txt": "The cat sat on the mat.\nThe dog slept by the door.",
    "budget/q3.md": "Quarterly budget: travel, hardware and licences.\nKeys to the office cost extra.",
}


@pytest.fixture(autouse=True)
def runtime_dir(tmp_path_factory, monkeypatch):
    """Discovery files of this session only."""
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path_factory.getbasetemp() / "run"))
    monkeypatch.setenv("EDGE_EMBED_CPU", "1")


@pytest.fixture(scope="module")
def model_path(tmp_path_factory, tiny_model) -> Path:
    path = tmp_path_factory.mktemp("serve-model") / "tiny-serve.gguf"
    shutil.copy(tiny_model.path, path)
    return path


@pytest.fixture(scope="module")
def indexed(tmp_path_factory, model_path) -> Path:
    base = tmp_path_factory.mktemp("serve-index")
    for relpath, text in NOTES.items():
        (base / "notes" / relpath).parent.mkdir(parents=True, exist_ok=True)
        (base / "notes" / relpath).write_text(text, encoding="utf-8")
    (base / "secret.txt").write_text("outside the index", encoding="utf-8")
    (base / "notes" / "link.txt").symlink_to(base / "secret.txt")
    with Index.open(base / "index.db", CPU) as index:
        index.index([base / "notes"], IndexRequest(chunk_tokens=128, overlap=0), model=str(model_path))
    return base


@pytest.fixture(scope="module")
def server(indexed, model_path):
    with running_server(indexed / "index.db", None) as (url, service):
        yield url, service


@pytest.fixture(scope="module")
def sdk(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server[0] + "/v1", api_key="unused", max_retries=0)


# --------------------------------------------------------------------------- openai SDK
def test_openai_sdk_default_base64_matches_in_process_and_reference(sdk, server, local, tiny_model):
    model = server[1].model_id
    answer = sdk.embeddings.create(input="The quick brown fox", model=model)  # the SDK asks for base64
    vector = answer.data[0].embedding
    assert len(vector) == local.native_dim
    assert cosine(vector, local.embed(["The quick brown fox"])[0]) >= MIN_COSINE
    reference = tiny_model.embed(tiny_model.tokenize("The quick brown fox") + [tiny_model.eos_id])
    assert cosine(vector, reference) >= MIN_COSINE
    assert answer.usage.prompt_tokens == answer.usage.total_tokens == len(tiny_model.tokenize("The quick brown fox")) + 1


def test_openai_sdk_float_dims_batch_and_token_ids(sdk, server, local, tiny_model):
    model = server[1].model_id
    floats = sdk.embeddings.create(input=TEXTS, model=model, encoding_format="float")
    assert [item.index for item in floats.data] == list(range(100))
    expected = local.embed(TEXTS)
    assert min(cosine(item.embedding, row) for item, row in zip(floats.data, expected)) >= MIN_COSINE
    small = sdk.embeddings.create(input=TEXTS[:3], model=model, dimensions=32)
    for item, row in zip(small.data, local.embed(TEXTS[:3], dims=32)):
        assert len(item.embedding) == 32 and cosine(item.embedding, row) >= MIN_COSINE
    ids = tiny_model.tokenize("hello tokens")
    by_ids = sdk.embeddings.create(input=[ids, ids[:3]], model=model)
    assert cosine(by_ids.data[0].embedding, tiny_model.embed(ids + [tiny_model.eos_id])) >= MIN_COSINE
    assert cosine(by_ids.data[1].embedding, tiny_model.embed(ids[:3] + [tiny_model.eos_id])) >= MIN_COSINE
    single = sdk.embeddings.create(input=ids, model=model)
    assert cosine(single.data[0].embedding, by_ids.data[0].embedding) >= MIN_COSINE


def test_query_input_type_gets_the_instruction(server, local):
    body = {"input": ["rotate keys"], "input_type": "query", "instruct": "Find notes"}
    vector = httpx.post(server[0] + "/v1/embeddings", json=body).json()["data"][0]["embedding"]
    assert cosine(vector, local.embed(["rotate keys"], input_type="query", instruct="Find notes")[0]) >= MIN_COSINE


def test_open_webui_request_shape_gets_floats_in_order(server, local):
    texts = ["first chunk", "second chunk", "third"]
    answer = httpx.post(server[0] + "/v1/embeddings", json={"input": texts, "model": server[1].model_id}).json()
    assert [item["index"] for item in answer["data"]] == [0, 1, 2]
    for item, row in zip(answer["data"], local.embed(texts)):
        assert isinstance(item["embedding"], list) and cosine(item["embedding"], row) >= MIN_COSINE


def test_models_health_and_openapi(server):
    url, service = server
    assert httpx.get(url + "/v1/models").json()["data"][0]["id"] == service.model_id
    health = httpx.get(url + "/health").json()
    assert health["device"] == "cpu" and health["queue_depth"] == 0 and health["index"] == str(service.index.path)
    paths = httpx.get(url + "/openapi.json").json()["paths"]
    assert {"/v1/embeddings", "/v1/search", "/v1/models", "/health"} <= set(paths)
    assert paths["/v1/embeddings"]["post"]["requestBody"]["content"]["application/json"]["schema"]["required"] == ["input"]


# --------------------------------------------------------------------------- abuse
ABUSE = [
    ("bad json", {"content": b"{not json"}, 400, None),
    ("not an object", {"json": ["x"]}, 400, None),
    ("10 MB body", {"content": b"[" + b"1," * (5 * 1024 * 1024) + b"1]"}, 413, "body_too_large"),
    ("empty string", {"json": {"input": ""}}, 400, None),
    ("empty array", {"json": {"input": []}}, 400, None),
    ("mixed types", {"json": {"input": ["a", 1]}}, 400, None),
    ("too many inputs", {"json": {"input": ["x"] * 5000}}, 400, "too_many_inputs"),
    ("token id out of range", {"json": {"input": [[1, 2, 10_000_000]]}}, 400, None),
    ("negative token id", {"json": {"input": [-1]}}, 400, None),
    ("dims too small", {"json": {"input": "x", "dimensions": 8}}, 400, None),
    ("dims too large", {"json": {"input": "x", "dimensions": 100_000}}, 400, None),
    ("bad encoding", {"json": {"input": "x", "encoding_format": "int8"}}, 400, None),
    ("bad input_type", {"json": {"input": "x", "input_type": "classification"}}, 400, None),
    ("bad task", {"json": {"input": "x", "task": "text-matching"}}, 400, None),
    ("too long an input", {"json": {"input": "word " * 2000}}, 400, None),
]


@pytest.mark.parametrize("name,request_kwargs,status,code", ABUSE, ids=[case[0] for case in ABUSE])
def test_abuse_gets_a_4xx_in_openai_shape_and_the_server_keeps_serving(server, name, request_kwargs, status, code):
    answer = httpx.post(server[0] + "/v1/embeddings", timeout=60, **request_kwargs)
    assert answer.status_code == status, answer.text
    error = answer.json()["error"]
    assert set(error) - {"edge_embed"} == {"message", "type", "param", "code"} and error["message"]  # + our client's data
    assert code is None or error["code"] == code
    assert httpx.post(server[0] + "/v1/embeddings", json={"input": "still here"}).status_code == 200


def test_too_long_an_input_names_the_field_and_the_server_setting_in_http_words(server):
    answer = httpx.post(server[0] + "/v1/embeddings", json={"input": "word " * 2000}, timeout=60)
    error = answer.json()["error"]
    assert answer.status_code == 400 and error["param"] == "input"
    assert "start the server with a larger context size" in error["message"] and "--ctx" not in error["message"]


def test_limits_are_what_the_docs_say():
    assert MAX_INPUTS == 2048 and MAX_BODY_BYTES == 8 * 1024 * 1024


def test_search_answer_says_how_long_the_server_took(server):
    """Server-Timing: the server's own time, which a client's wall time is compared with."""
    answer = httpx.post(server[0] + "/v1/search", json={"query": "rotate keys"})
    name, _, duration = answer.headers["server-timing"].partition(";dur=")
    assert answer.status_code == 200 and name == "search" and 0 < float(duration) < 60_000


def test_search_errors_are_4xx(server):
    url = server[0] + "/v1/search"
    assert httpx.post(url, json={"query": ""}).status_code == 400
    assert httpx.post(url, json={"query": "x", "k": 0}).status_code == 400
    assert httpx.post(url, json={"query": "x", "mode": "fuzzy"}).status_code == 400
    unknown = httpx.post(url, json={"query": "x", "in": ["/nonexistent/folder"]})
    assert unknown.status_code == 400 and "unknown path /nonexistent/folder" in unknown.json()["error"]["message"]
    assert httpx.post(url, json={"query": "x", "rerank": "yes"}).status_code == 400
    assert httpx.post(url, json={"query": "x", "rerank_top": 0}).status_code == 400


def test_a_bad_search_field_is_named_as_the_json_field_not_the_cli_flag(server):
    """Library errors are data (errors.py): HTTP names the field of its request, ``param``
    included. Before, /v1/search answered "unknown --in path" with param null."""
    url = server[0] + "/v1/search"
    unknown = httpx.post(url, json={"query": "x", "mode": "keyword", "in": ["/nonexistent/folder"]}).json()["error"]
    assert unknown["param"] == "in" and unknown["code"] == "invalid"
    assert unknown["message"].startswith("unknown path /nonexistent/folder: it does not exist; in takes files")
    few = httpx.post(url, json={"query": "x", "k": 0}).json()["error"]
    assert few["param"] == "k" and "-k" not in few["message"]
    for error in (unknown, few):
        assert "--" not in error["message"] and "in_paths" not in error["message"]


def library_failure(monkeypatch, service, error) -> None:
    """The server's index fails its next searches with ``error``, as the store raises it."""

    def fail(*args, **kwargs):
        raise error

    monkeypatch.setattr(service.index, "search_outcome", fail)


def test_a_busy_index_is_503_with_retry_after(server, monkeypatch):
    """Another process held the index past SQLite's busy timeout: asking again later works,
    so 503 and Retry-After, not the 400 ("your request is wrong") it was."""
    import apsw

    from edge_embed.store.sqlite_errors import index_error

    url, service = server
    busy = index_error(apsw.BusyError("database is locked"), service.index.path)
    library_failure(monkeypatch, service, busy)
    answer = httpx.post(url + "/v1/search", json={"query": "keys", "mode": "keyword"})
    assert answer.status_code == 503 and answer.headers["retry-after"].isdigit()
    assert answer.json()["error"]["code"] == "busy" and answer.json()["error"]["type"] == "server_error"


def test_a_full_disk_is_507(server, monkeypatch):
    import apsw

    from edge_embed.store.sqlite_errors import index_error

    url, service = server
    library_failure(monkeypatch, service, index_error(apsw.FullError("database or disk is full"), service.index.path))
    answer = httpx.post(url + "/v1/search", json={"query": "keys", "mode": "keyword"})
    assert answer.status_code == 507 and "retry-after" not in answer.headers
    assert answer.json()["error"]["code"] == "storage_full"


def test_a_mismatched_index_is_409(server, monkeypatch):
    from edge_embed.errors import IndexMismatch

    url, service = server
    library_failure(monkeypatch, service, IndexMismatch("the index was built with another model"))
    answer = httpx.post(url + "/v1/search", json={"query": "keys", "mode": "keyword"})
    assert answer.status_code == 409 and answer.json()["error"]["code"] == "conflict"


def test_search_passes_rerank_through_and_says_why(server, monkeypatch):
    """The server's Index decides like a local one; the CLI prints the reason for --explain."""
    url = server[0] + "/v1/search"
    monkeypatch.setenv("HF_HUB_CACHE", "/nonexistent-hf-cache")
    refused = httpx.post(url, json={"query": "keys", "mode": "keyword", "rerank": True})
    message = refused.json()["error"]["message"]
    assert refused.status_code == 404 and "download qwen3-reranker-0.6b" in message and "edge-embed" not in message
    answer = httpx.post(url, json={"query": "keys", "mode": "keyword", "rerank": False}).json()
    # in this API's words (it has no --no-rerank), and as data our CLI words for --explain
    assert answer["rerank"] == 'off ("rerank": false)'
    assert answer["rerank_phrase"] == {"template": "off ({no_rerank})", "values": {}}
    default = httpx.post(url, json={"query": "keys", "mode": "keyword"}).json()["rerank"]
    assert default == 'off: keyword mode loads no model; "rerank": true turns it on'
    cpu = httpx.post(url, json={"query": "keys", "mode": "vector"}).json()["rerank"]
    assert cpu.startswith("off: ") and "CPU forced (force_cpu or EDGE_EMBED_CPU=1)" in cpu, cpu
    assert "--" not in cpu + default and "edge-embed" not in cpu + default


def test_a_server_reranks_with_its_own_reranker(server, monkeypatch, tmp_path):
    """`serve --reranker FILE` (or EDGE_EMBED_RERANKER): searches that rerank use that model."""
    from edge_embed.testing.reranker import write_tiny_qwen3_reranker

    url, service = server
    reranker = write_tiny_qwen3_reranker(tmp_path / "own-reranker.gguf")
    monkeypatch.setattr(service, "reranker", str(reranker.path))
    answer = httpx.post(url + "/v1/search", json={"query": "keys", "mode": "keyword", "rerank": True}).json()
    assert answer["rerank"].startswith('on ("rerank": true): own-reranker.gguf on the CPU (CPU forced (force_cpu')
    assert answer["results"] and all(hit["rerank_score"] is not None for hit in answer["results"])


# --------------------------------------------------------------------------- security
def test_foreign_host_and_origin_are_refused(server):
    url = server[0]
    assert httpx.get(url + "/health", headers={"Host": "evil.example:80"}).status_code == 403
    assert httpx.get(url + "/health", headers={"Host": f"localhost:{url.rsplit(':', 1)[1]}"}).status_code == 200
    refused = httpx.post(url + "/v1/embeddings", json={"input": "x"}, headers={"Origin": "https://evil.example"})
    assert refused.status_code == 403 and "--cors" in refused.json()["error"]["message"]
    assert httpx.get(url + "/health").status_code == 200


def test_api_key_is_required_on_every_route_and_cors_allows_one_origin(model_path):
    with running_server(None, str(model_path), api_key="s3cret", cors=("http://localhost:3000",)) as (url, _):
        assert httpx.get(url + "/health").status_code == 401
        assert httpx.get(url + "/health", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert httpx.post(url + "/mcp", json={}).status_code == 401
        ok = {"Authorization": "Bearer s3cret"}
        assert httpx.get(url + "/health", headers=ok).status_code == 200
        allowed = httpx.get(url + "/health", headers={**ok, "Origin": "http://localhost:3000"})
        assert allowed.status_code == 200 and allowed.headers["access-control-allow-origin"] == "http://localhost:3000"
        preflight = httpx.options(url + "/v1/embeddings", headers={
            "Origin": "http://localhost:3000", "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type"})
        assert preflight.status_code == 200
        assert httpx.get(url + "/health", headers={**ok, "Origin": "http://other:3000"}).status_code == 403
        client = openai.OpenAI(base_url=url + "/v1", api_key="s3cret", max_retries=0)
        assert len(client.embeddings.create(input="x", model="tiny-serve").data) == 1
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=url + "/v1", api_key="nope", max_retries=0).embeddings.create(input="x", model="tiny-serve")


def test_serve_refuses_a_public_address_without_a_key(model_path):
    result = CliRunner().invoke(cli, ["serve", "--host", "0.0.0.0", "--model", str(model_path)], env={"EDGE_EMBED_API_KEY": ""})
    assert result.exit_code == 2 and "--api-key" in result.output


# --------------------------------------------------------------------------- engine thread
def test_keep_alive_unloads_and_the_next_request_loads_again(model_path):
    with running_server(None, str(model_path), keep_alive_s=0.3) as (url, service):
        assert not service.worker.loaded  # lazy: nothing loaded before the first request
        assert httpx.post(url + "/v1/embeddings", json={"input": "x"}).status_code == 200
        deadline = time.monotonic() + 10
        while service.worker.loaded and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not service.worker.loaded and httpx.get(url + "/health").json()["loaded"] is False
        assert httpx.post(url + "/v1/embeddings", json={"input": "again"}).status_code == 200
        assert service.worker.loads == 2


def test_keep_alive_also_frees_what_the_server_registered(model_path):
    """The rerankers go with the embedder when the server is idle (on_unload)."""
    from edge_embed.server.worker import EmbedJob, EngineWorker

    released = []
    worker = EngineWorker(TextEmbedder.open(str(model_path), CPU), keep_alive_s=0.2, on_unload=lambda: released.append(1))
    worker.start()
    try:
        worker.embed(EmbedJob(texts=["hello"]), timeout=60)
        deadline = time.monotonic() + 10
        while not released and time.monotonic() < deadline:
            time.sleep(0.05)
        assert released == [1] and not worker.loaded
    finally:
        worker.stop()


def test_stopping_the_server_closes_its_index(indexed, tmp_path):
    """The app's shutdown closes the Index it opened, after the engine thread: its read
    connections (the pool thread's of a search, the start's own) close, and SQLite folds
    the -wal file back. Before, they stayed open until the process ended."""
    db = tmp_path / "index.db"
    shutil.copy(indexed / "index.db", db)
    with running_server(db, None) as (url, service):
        assert httpx.post(url + "/v1/search", json={"query": "rotate keys"}).status_code == 200
        assert Path(f"{db}-wal").exists()
    assert not Path(f"{db}-wal").exists() and not Path(f"{db}-shm").exists()
    assert not service.worker.loaded


def test_concurrent_requests_share_decodes(server, local):
    """16 single-text requests at once: fewer decodes than requests, each answer right."""
    url, service = server
    texts = [f"concurrent text {i}" for i in range(16)]
    engine = service.embedder.engine()
    before, health_before = engine.stats.decodes, httpx.get(url + "/health").json()
    with httpx.Client(timeout=60) as http, concurrent.futures.ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda t: http.post(url + "/v1/embeddings", json={"input": t}).json(), texts))
    for answer, row in zip(answers, local.embed(texts)):
        assert cosine(answer["data"][0]["embedding"], row) >= MIN_COSINE
    assert engine.stats.decodes - before < len(texts)
    health = httpx.get(url + "/health").json()  # what the benchmark reads: inputs per engine round
    assert health["inputs_embedded"] - health_before["inputs_embedded"] == len(texts)
    assert 0 < health["rounds"] - health_before["rounds"] < len(texts)


def test_load_32_clients_x_50_requests_all_correct(server, local):
    """Bounded load: mixed sizes, every answer checked, none dropped; p50/p95 printed."""
    url = server[0]
    pool_texts = [f"load text {i} " + "word " * (i % 13) for i in range(64)]
    expected = dict(zip(pool_texts, local.embed(pool_texts)))

    def client(seed: int) -> list[float]:
        rng = random.Random(seed)
        latencies = []
        with httpx.Client(timeout=120) as http:
            for _ in range(50):
                batch = rng.sample(pool_texts, rng.choice((1, 1, 2, 5)))
                started = time.perf_counter()
                answer = http.post(url + "/v1/embeddings", json={"input": batch, "encoding_format": "float"})
                latencies.append(time.perf_counter() - started)
                assert answer.status_code == 200, answer.text
                data = answer.json()["data"]
                assert [item["index"] for item in data] == list(range(len(batch)))
                for text, item in zip(batch, data):
                    assert cosine(item["embedding"], expected[text]) >= MIN_COSINE
        return latencies

    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(32) as pool:
        latencies = [value for values in pool.map(client, range(32)) for value in values]
    assert len(latencies) == 32 * 50
    assert time.monotonic() - started < 300
    cuts = statistics.quantiles(latencies, n=20)
    print(f"\nload: {len(latencies)} requests, p50 {cuts[9] * 1000:.1f} ms, p95 {cuts[18] * 1000:.1f} ms")


# --------------------------------------------------------------------------- CLI through the server
QUERIES = [
    ["rotate the keys"],
    ["rotate the keys", "--json"],
    ["cat", "--mode", "vector", "--explain", "--jsonl"],
    ["keys", "--files", "--mode", "keyword"],
    ["budget", "--full", "--explain", "-k", "2"],
]


@pytest.mark.parametrize("args", QUERIES, ids=[" ".join(q) for q in QUERIES])
def test_query_through_the_server_prints_exactly_the_in_process_output(indexed, model_path, args):
    db = ["--db", str(indexed / "index.db")]
    alone = CliRunner().invoke(cli, ["query", *args, *db, "--no-server"])
    with running_server(indexed / "index.db", None, discoverable=True) as (url, service):
        served = CliRunner().invoke(cli, ["query", *args, *db])
        assert service.worker.queue_depth == 0
        asked = service.worker.loads == 1 or "keyword" in args
    assert asked, "the server was not used"
    assert (served.exit_code, aged(served.stdout), served.stderr) == (alone.exit_code, aged(alone.stdout), alone.stderr)
    assert alone.exit_code == 0


def aged(output: str) -> str:
    """--json output with its index_age_s (seconds, which pass between two runs) masked."""
    return re.sub(r'"index_age_s": [0-9.]+', '"index_age_s": AGE', output)


def test_query_errors_through_the_server_are_the_same_one_liners(indexed, model_path):
    db = ["--db", str(indexed / "index.db")]
    alone = CliRunner().invoke(cli, ["query", "x", "--in", "/nonexistent", *db, "--no-server"])
    with running_server(indexed / "index.db", None, discoverable=True):
        served = CliRunner().invoke(cli, ["query", "x", "--in", "/nonexistent", *db])
    assert served.exit_code == alone.exit_code == 2 and served.stderr == alone.stderr


def test_query_through_a_server_with_an_api_key_sends_the_key(indexed):
    """The CLI's own HTTP client: EDGE_EMBED_API_KEY as a bearer token; without it the
    server refuses (401) and the query runs in-process instead, with the same output."""
    args = ["query", "rotate keys", "--json", "--db", str(indexed / "index.db")]
    alone = CliRunner().invoke(cli, [*args, "--no-server"])
    with running_server(indexed / "index.db", None, api_key="s3cret", discoverable=True) as (_, service):
        refused = CliRunner().invoke(cli, args, env={"EDGE_EMBED_API_KEY": ""})
        assert service.worker.loads == 0
        served = CliRunner().invoke(cli, args, env={"EDGE_EMBED_API_KEY": "s3cret"})
        assert service.worker.loads == 1
    assert alone.exit_code == refused.exit_code == served.exit_code == 0
    assert aged(alone.stdout) == aged(refused.stdout) == aged(served.stdout)


def test_stale_discovery_file_is_ignored(indexed, tmp_path):
    from edge_embed.server.discovery import ServerInfo, publish

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    publish(ServerInfo("127.0.0.1", 9, int(dead.stdout), str((indexed / "index.db").resolve()), "x"))
    result = CliRunner().invoke(cli, ["query", "keys", "--mode", "keyword", "--db", str(indexed / "index.db")])
    assert result.exit_code == 0 and "keys.md" in result.stdout


def test_embed_through_the_server_prints_exactly_the_in_process_output(model_path):
    args = ["embed", "--model", str(model_path), "hello", "world"]
    alone = CliRunner().invoke(cli, [*args, "--no-server"])
    with running_server(None, str(model_path), discoverable=True) as (_, service):
        served = CliRunner().invoke(cli, args)
        served_query = CliRunner().invoke(cli, [*args, "--query", "--dims", "32", "--jsonl"])
        assert service.worker.loads == 1
    alone_query = CliRunner().invoke(cli, [*args, "--query", "--dims", "32", "--jsonl", "--no-server"])
    assert served.exit_code == alone.exit_code == 0
    assert served.stdout == alone.stdout and served_query.stdout == alone_query.stdout


# What `query` answered by a server must not import: each costs start-up time on every query.
NOT_ON_THE_CLIENT_PATH = (
    "numpy", "llama_cpp", "edge_embed.runtime",  # the model
    "apsw", "sqlite_vec", "edge_embed.store.core", "edge_embed.store.part",  # SQLite, the Store
    "edge_embed.api", "edge_embed.files", "pathspec",  # the library's façade, indexing
    "importlib.metadata",  # dependency_error's, needed only when an import fails
    "http.client", "ssl", "email", "importlib.resources",  # the client speaks HTTP on a socket
)


def test_the_client_path_imports_no_model_and_no_sqlite(indexed):
    """A real `edge-embed query` process through the server: fast path, nothing heavy loaded."""
    code = (
        "import sys, json\n"
        "from edge_embed.cli import cli\n"
        "try:\n    cli(sys.argv[2:], prog_name='edge-embed')\n"
        "except SystemExit as exit:\n    code = exit.code\n"
        "heavy = sorted(m for m in json.loads(sys.argv[1]) if m in sys.modules)\n"
        "print(json.dumps({'code': code, 'heavy': heavy}), file=sys.stderr)\n"
    )
    args = ["query", "rotate keys", "--json", "--db", str(indexed / "index.db")]
    with running_server(indexed / "index.db", None, discoverable=True) as (_, service):
        command = [sys.executable, "-c", code, json.dumps(NOT_ON_THE_CLIENT_PATH), *args]
        result = subprocess.run(command, capture_output=True, text=True, env=os.environ, timeout=120)
        assert service.worker.loads == 1  # the server embedded the query
    report = json.loads(result.stderr.strip().splitlines()[-1])
    assert report == {"code": 0, "heavy": []}, result.stderr
    assert {hit["relpath"] for hit in json.loads(result.stdout)["results"]} >= set(NOTES)


# --------------------------------------------------------------------------- remote backend
def test_index_through_embed_url_holds_the_vectors_of_a_local_build(indexed, model_path, tmp_path):
    from edge_embed.search import SearchOptions

    notes = indexed / "notes"
    with running_server(None, str(model_path)) as (url, service):
        with Index.open(tmp_path / "remote.db", CPU, embed_url=url) as remote:
            summary = remote.index([notes], IndexRequest(chunk_tokens=128, overlap=0), model=str(model_path))
            assert summary.indexed >= len(NOTES) and summary.tokens_embedded > 0
            settings = remote.settings()
            assert (settings.model_label, settings.model_file, settings.dims) == (service.model_id, url + "/v1", local_dims(indexed))
            remote_hits = remote.search("rotate the keys", SearchOptions(mode="vector", k=3))
    with Index.open(indexed / "index.db", CPU) as local:
        local_hits = local.search("rotate the keys", SearchOptions(mode="vector", k=3))
    assert [hit.chunk.relpath for hit in remote_hits] == [hit.chunk.relpath for hit in local_hits]
    assert all(abs(a.score - b.score) < 1e-4 for a, b in zip(remote_hits, local_hits))
    local_vectors, remote_vectors = stored_vectors(indexed / "index.db"), stored_vectors(tmp_path / "remote.db")
    assert set(local_vectors) == set(remote_vectors)
    assert min(cosine(local_vectors[h], remote_vectors[h]) for h in local_vectors) >= MIN_COSINE


def test_index_through_embed_url_reads_only_the_local_vocabulary(indexed, model_path, tmp_path, monkeypatch):
    """The local GGUF only counts tokens: its weights were loaded (uploaded to a GPU where
    the plan had one) for nothing, and on a CPU where llama.cpp's kernels die ("crashes",
    runtime/amx.py) every load is refused, so such a laptop could not index through a
    server at all. Its vocabulary alone is enough, and loads nothing that runs."""
    from edge_embed.errors import LlamaCppCrashes
    from edge_embed.runtime import amx

    with running_server(None, str(model_path)) as (url, service):
        warm = httpx.post(f"{url}/v1/embeddings", json={"input": ["warm"], "model": "m"}, timeout=60)
        assert warm.status_code == 200 and service.worker.loads == 1  # the server's model is in memory

        crashes = amx.AmxVerdict("crashes", "the probe died of SIGSEGV")
        monkeypatch.setattr(amx, "amx_verdict", lambda: crashes)  # from here on no local model may load
        with pytest.raises(LlamaCppCrashes):
            TextEmbedder.open(str(model_path), CPU).embed(["a local load is refused"])
        with Index.open(tmp_path / "remote.db", CPU, embed_url=url) as remote:
            summary = remote.index([indexed / "notes"], IndexRequest(chunk_tokens=128, overlap=0), model=str(model_path))
    assert summary.indexed >= len(NOTES) and summary.tokens_embedded > 0


def local_dims(indexed: Path) -> int:
    with Index.open(indexed / "index.db") as index:
        return index.settings().dims


def stored_vectors(db: Path) -> dict[str, np.ndarray]:
    with Store.open(db, create=False) as store:
        hashes = [row[0] for row in store._conn.execute("SELECT text_hash FROM chunks")]
        return store.vectors.vectors_for_hashes(hashes)


def test_embed_url_retries_then_says_what_to_do(monkeypatch):
    from edge_embed.errors import EdgeEmbedError
    from edge_embed.runtime import remote

    monkeypatch.setattr(remote, "BACKOFF_S", 0.01)
    with pytest.raises(EdgeEmbedError, match="failed 6 times.*run the same command again"):
        TextEmbedder.open("x", embed_url="http://127.0.0.1:9")


def test_embed_command_through_embed_url_matches_local(model_path):
    args = ["embed", "hello world", "--no-server"]
    local_out = CliRunner().invoke(cli, [*args, "--model", str(model_path)])
    with running_server(None, str(model_path)) as (url, service):
        remote_out = CliRunner().invoke(cli, [*args, "--embed-url", url, "--query", "--dims", "32"])
        local_query = CliRunner().invoke(cli, [*args, "--model", str(model_path), "--query", "--dims", "32"])
    assert remote_out.exit_code == 0, remote_out.output
    assert cosine(json.loads(remote_out.stdout)[0], json.loads(local_query.stdout)[0]) >= MIN_COSINE
    assert local_out.exit_code == 0


def test_embed_url_sends_its_own_key_never_the_serve_key(model_path, monkeypatch):
    """Issue 16, defect 5: EDGE_EMBED_API_KEY (this machine's `serve` key) was also the
    bearer token sent to any --embed-url host. Now that host gets EDGE_EMBED_URL_KEY only."""
    args = ["embed", "hello world", "--no-server"]
    monkeypatch.delenv("EDGE_EMBED_URL_KEY", raising=False)
    with running_server(None, str(model_path), api_key="remote-key") as (url, _):
        monkeypatch.setenv("EDGE_EMBED_API_KEY", "remote-key")
        leaked = CliRunner().invoke(cli, [*args, "--embed-url", url])
        monkeypatch.setenv("EDGE_EMBED_API_KEY", "my-own-serve-key")
        monkeypatch.setenv("EDGE_EMBED_URL_KEY", "remote-key")
        sent = CliRunner().invoke(cli, [*args, "--embed-url", url])
    assert leaked.exit_code == 2 and "401" in leaked.output, leaked.output
    assert sent.exit_code == 0, sent.output


def test_an_embed_url_index_keeps_its_dims_when_run_again_without_them(indexed, model_path, tmp_path):
    """Issue 16, defect 2: a remote model has no header hash, so it never counted as "the
    same model": a re-run without --dims resolved to the full width ("dims differ"), and
    --rebuild silently switched to it."""
    db = ["--db", str(tmp_path / "dims.db")]
    common = [str(indexed / "notes"), *db, "--model", str(model_path), "--chunk-tokens", "128", "--overlap", "0"]
    with running_server(None, str(model_path)) as (url, _):
        built = CliRunner().invoke(cli, ["index", *common, "--embed-url", url, "--dims", "32"])
        again = CliRunner().invoke(cli, ["index", *common, "--embed-url", url])
        rebuilt = CliRunner().invoke(cli, ["index", "--rebuild", *db, "--embed-url", url, "--model", str(model_path)])
    for result in (built, again, rebuilt):
        assert result.exit_code == 0, result.output
    with Store.open(tmp_path / "dims.db", create=False) as store:
        assert store.meta.settings().dims == 32


def test_index_and_query_commands_through_embed_url(indexed, model_path, tmp_path):
    db = ["--db", str(tmp_path / "cli-remote.db")]
    with running_server(None, str(model_path)) as (url, _):
        built = CliRunner().invoke(cli, ["index", str(indexed / "notes"), *db, "--embed-url", url, "--model", str(model_path), "--chunk-tokens", "128", "--overlap", "0"])
        assert built.exit_code == 0, built.output
        remote = CliRunner().invoke(cli, ["query", "rotate the keys", "--json", *db], env={"EDGE_EMBED_URL": url})
    local = CliRunner().invoke(cli, ["query", "rotate the keys", "--json", "--db", str(indexed / "index.db"), "--no-server"])
    assert remote.exit_code == 0, remote.output
    paths = lambda result: [hit["relpath"] for hit in json.loads(result.stdout)["results"]]  # noqa: E731
    assert paths(remote) == paths(local)
    refused = CliRunner().invoke(cli, ["index", str(indexed / "notes"), *db, "--model", str(model_path)])
    assert refused.exit_code == 2 and "model" in refused.stderr  # a local model is not mixed into a remote-built index
