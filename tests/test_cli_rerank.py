"""`edge-embed query --rerank` end to end: a real index, the tiny embedding model and the
tiny reranker through llama.cpp, checked against the reranker's numpy reference."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from hubserver import fake_hub  # noqa: F401  (a fixture)

from edge_embed.catalog import get_entry
from edge_embed.cli import cli
from edge_embed.rerank import RerankStep, blend
from edge_embed.search import SearchOptions, search
from edge_embed.store import Store
from edge_embed.testing.reranker import write_tiny_qwen3_reranker

FILES = {
    "keys.md": "Rotate the API keys every ninety days.",
    "vault.md": "Use the vault CLI to rotate keys and secrets.",
    "pets.txt": "The cat sat on the mat by the keys.",
    "budget.md": "Quarterly budget: keys to the office cost extra.",
    "travel.md": "Travel keys: passport, tickets, keys to the flat.",
    "notes.md": "Notes about keys, locks and doors.",
}
QUERY = "rotate keys"


@pytest.fixture(scope="module")
def tiny_reranker(tmp_path_factory: pytest.TempPathFactory):
    return write_tiny_qwen3_reranker(tmp_path_factory.mktemp("models") / "tiny-reranker.gguf")


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory, tiny_model) -> Path:
    root = tmp_path_factory.mktemp("notes")
    for name, text in FILES.items():
        (root / name).write_text(text, encoding="utf-8")
    db = root.parent / f"{root.name}.db"
    result = CliRunner().invoke(cli, ["index", str(root), "--db", str(db), "--model", str(tiny_model.path), "--quiet"])
    assert result.exit_code == 0, result.output
    return db


@pytest.fixture(autouse=True)
def no_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An empty model cache, and no reranker chosen by the environment."""
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.delenv("EDGE_EMBED_RERANKER", raising=False)


def run(db: Path, *args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, ["query", QUERY, "--db", str(db), "--no-server", *args], env={"EDGE_EMBED_CPU": "1", **(env or {})})


def results(result: Result) -> list[dict]:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)["results"]


def test_rerank_scores_each_candidate_like_the_reference_and_sorts_by_the_blend(db, tiny_reranker) -> None:
    records = results(run(db, "--rerank", "--reranker", str(tiny_reranker.path), "--json", "-k", "6"))
    assert len(records) == 6
    for record in records:
        expected = tiny_reranker.score(tiny_reranker.prompt_tokens(QUERY, record["text"]))
        assert abs(record["rerank_score"] - expected) < 1e-3, record["relpath"]
        assert record["score"] == pytest.approx(blend(record["rank_before_rerank"], record["rerank_score"]).blended)
    assert [r["score"] for r in records] == sorted((r["score"] for r in records), reverse=True)
    assert sorted(r["rank_before_rerank"] for r in records) == [1, 2, 3, 4, 5, 6]
    assert max(r["rerank_score"] for r in records) - min(r["rerank_score"] for r in records) > 0.01


def test_the_hook_rescores_rerank_top_candidates_then_keeps_k(db) -> None:
    """k 2 with top 6: the reranker sees six candidates, and #6 with the best verdict makes the page."""
    seen = []

    def verdicts(query: str, texts):
        seen.append(len(texts))
        return [i / (len(texts) - 1) for i in range(len(texts))]  # the later, the better

    with Store.open(db, create=False) as store:
        hits = search(store, QUERY, SearchOptions(mode="keyword", k=2), embed_query=None, rerank=RerankStep(verdicts, 6))
    assert seen == [6]
    assert [h.rerank.rank for h in hits] == [1, 6]


def test_rerank_top_reaches_the_hook(db, tiny_reranker, monkeypatch: pytest.MonkeyPatch) -> None:
    """--rerank-top 5 with -k 2 rescores five; a --rerank-top under -k still rescores k."""
    seen = []
    original = RerankStep.__call__
    monkeypatch.setattr(RerankStep, "__call__", lambda step, query, hits: seen.append(len(hits)) or original(step, query, hits))
    args = ("--rerank", "--reranker", str(tiny_reranker.path), "--json")
    assert len(results(run(db, *args, "-k", "2", "--rerank-top", "5"))) == 2
    assert len(results(run(db, *args, "-k", "3", "--rerank-top", "1"))) == 3
    assert seen == [5, 3]


def test_files_lists_the_reranked_order(db, tiny_reranker) -> None:
    args = ("--rerank", "--reranker", str(tiny_reranker.path), "-k", "6", "--per-file", "1")
    paths = run(db, *args, "--files").stdout.splitlines()
    assert [Path(p).name for p in paths] == [r["relpath"] for r in results(run(db, *args, "--json"))]
    unreranked = run(db, "--no-rerank", "-k", "6", "--per-file", "1", "--files").stdout.splitlines()
    assert sorted(paths) == sorted(unreranked) and paths != unreranked  # the reranker did reorder them


def test_explain_says_rerank_is_on_and_shows_the_blend(db, tiny_reranker) -> None:
    result = run(db, "--rerank", "--reranker", str(tiny_reranker.path), "--explain", "-k", "2")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("rerank: on (--rerank): tiny-reranker.gguf on the CPU")
    assert result.stdout.count("; rerank 0.") == 2 and "blended 0." in result.stdout


def test_default_on_the_cpu_is_off_and_explain_says_so(db, tiny_reranker) -> None:
    result = run(db, "--explain", env={"EDGE_EMBED_RERANKER": str(tiny_reranker.path)})
    assert result.exit_code == 0, result.output
    first = result.stdout.splitlines()[0]
    assert first == "rerank: off: tiny-reranker.gguf would run on the CPU (CPU forced (--cpu or EDGE_EMBED_CPU=1)); --rerank turns it on"
    assert "; rerank " not in result.stdout
    assert all(r["rerank_score"] is None for r in results(run(db, "--json")))


def test_no_rerank_says_so(db) -> None:
    result = run(db, "--no-rerank", "--explain")
    assert result.stdout.startswith("rerank: off (--no-rerank)\n")


def assert_one_line_error(result: Result, *fragments: str) -> None:
    assert result.exit_code == 2, result.output
    assert result.output.count("\n") == 1 and result.output.startswith("Error: "), result.output
    for fragment in fragments:
        assert fragment in result.output


def test_rerank_without_the_model_says_how_to_get_it(db) -> None:
    assert_one_line_error(run(db, "--rerank"), "qwen3-reranker-0.6b is not downloaded yet", "edge-embed pull qwen3-reranker-0.6b")


def test_an_old_conversion_without_the_head_is_refused(db, tmp_path: Path) -> None:
    old = write_tiny_qwen3_reranker(tmp_path / "old.gguf", classifier_head=False)
    assert_one_line_error(
        run(db, "--rerank", "--reranker", str(old.path)), "no classifier head (cls.output.weight)", "edge-embed pull qwen3-reranker-0.6b"
    )


def test_an_embedding_model_is_refused_as_reranker_and_a_reranker_as_embedding_model(db, tiny_model, tiny_reranker, tmp_path) -> None:
    assert_one_line_error(run(db, "--rerank", "--reranker", str(tiny_model.path)), "is not a reranker")
    result = CliRunner().invoke(cli, ["embed", "hello", "--model", str(tiny_reranker.path)], env={"EDGE_EMBED_CPU": "1"})
    assert_one_line_error(result, "is a reranker (pooling RANK), not an embedding model")


def test_keyword_mode_stays_model_free_unless_rerank_is_asked_for(db, tiny_reranker) -> None:
    env = {"EDGE_EMBED_RERANKER": str(tiny_reranker.path)}
    result = run(db, "--mode", "keyword", "--explain", env=env)
    assert result.stdout.startswith("rerank: off: keyword mode loads no model; --rerank turns it on\n")
    records = results(run(db, "--mode", "keyword", "--rerank", "--json", env=env))
    assert records and all(r["rerank_score"] is not None for r in records)


def test_the_pulled_catalog_reranker_is_the_default_reranker(db, fake_hub, tiny_reranker) -> None:
    """`edge-embed pull qwen3-reranker-0.6b` (from the fake hub), then --rerank needs no --reranker."""
    entry = get_entry("qwen3-reranker-0.6b")
    fake_hub.add_file(entry.repo, entry.file, tiny_reranker.path.read_bytes())
    assert_one_line_error(run(db, "--rerank"), "edge-embed pull qwen3-reranker-0.6b")
    assert CliRunner().invoke(cli, ["pull", entry.name]).exit_code == 0
    records = results(run(db, "--rerank", "--json", "-k", "2"))
    expected = tiny_reranker.score(tiny_reranker.prompt_tokens(QUERY, records[0]["text"]))
    assert abs(records[0]["rerank_score"] - expected) < 1e-3
    listed = CliRunner().invoke(cli, ["models"]).stdout
    assert re.search(r"qwen3-reranker-0.6b +Q8_0 +~0.6 GB +- +yes\n", listed), listed


def test_an_index_loads_one_reranker_for_all_its_decisions(db, tiny_reranker) -> None:
    """A server asks with rerank on, default, in keyword mode...: one handle, one model in
    memory; the keep-alive's release frees it and the next rerank loads it again."""
    from edge_embed.api import Index

    with Index.open(db) as index:
        hybrid = index.rerank_decision(True, str(tiny_reranker.path))
        keyword = index.rerank_decision(True, str(tiny_reranker.path), uses_model=False)
        assert hybrid.handle is keyword.handle
        hits = index.search(QUERY, SearchOptions(mode="keyword", k=2), rerank=True, reranker=str(tiny_reranker.path))
        assert hits and hits[0].rerank is not None and hybrid.handle.loaded
        index.release_rerankers()
        assert not hybrid.handle.loaded
        assert index.search(QUERY, SearchOptions(mode="keyword", k=2), rerank=True, reranker=str(tiny_reranker.path))
        assert hybrid.handle.loaded


@pytest.mark.parametrize(("rerank", "asks_server"), [(False, True), (True, False), (None, False)])
def test_a_chosen_reranker_keeps_the_server_only_with_no_rerank(monkeypatch, tmp_path, rerank, asks_server) -> None:
    """EDGE_EMBED_RERANKER (or --reranker) sends a search that may rerank to the local path,
    as the server has its own reranker; with --no-rerank the running server answers."""
    from edge_embed.cli.query import search_through_server
    from edge_embed.server import client

    asked = []
    monkeypatch.setattr(client, "search", lambda db, body: asked.append(body) or None)
    reranking = {"rerank": rerank, "rerank_top": 20, "reranker": "my-reranker.gguf"}
    assert search_through_server(tmp_path / "i.db", "q", SearchOptions(), None, reranking) is None
    assert bool(asked) is asks_server
