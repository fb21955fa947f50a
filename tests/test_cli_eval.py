"""`edge-embed eval` through CliRunner on a tiny corpus whose keyword ranking is known."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from click.testing import CliRunner

import edge_embed.api as api
from edge_embed.cli import cli

# BM25 ranks these predictably: more occurrences in a shorter text come first.
FILES = {
    "alpha.md": "zebra zebra zebra giraffe",
    "beta.md": "zebra lion with many other words that make this text longer than the first",
    "gamma.md": "lion tiger with many other words that make this text longer than the rest",
    "sub/delta.md": "tiger tiger tiger",
}
QUERIES = [
    {"query": "giraffe", "relevant": ["alpha.md"]},  # 1st: recall 1, MRR 1, nDCG 1
    {"query": "tiger", "relevant": ["sub/delta.md", "missing.md"]},  # delta 1st: recall 1/2, MRR 1
    {"query": "zebra", "relevant": ["beta.md"]},  # alpha 1st, beta 2nd: MRR 1/2
    {"query": "kangaroo", "relevant": ["gamma.md"]},  # nothing found: all 0
]
NDCG_TIGER = 1 / (1 + 1 / math.log2(3))  # one of two relevant files found, at rank 1
NDCG_ZEBRA = 1 / math.log2(3)  # the only relevant file at rank 2
EXPECTED_KEYWORD = {
    "recall": (1 + 0.5 + 1 + 0) / 4,
    "mrr": (1 + 1 + 0.5 + 0) / 4,
    "ndcg": (1 + NDCG_TIGER + NDCG_ZEBRA + 0) / 4,
}


@pytest.fixture(scope="module")
def indexed(tmp_path_factory, tiny_model) -> Path:
    """An index of FILES built by `edge-embed index` with the tiny model."""
    base = tmp_path_factory.mktemp("eval")
    root = base / "corpus"
    for relpath, text in FILES.items():
        (root / relpath).parent.mkdir(parents=True, exist_ok=True)
        (root / relpath).write_text(text + "\n", encoding="utf-8")
    db = base / "index.db"
    result = CliRunner().invoke(cli, ["index", str(root), "--db", str(db), "--model", str(tiny_model.path), "--quiet"],
                                env={"EDGE_EMBED_CPU": "1"})
    assert result.exit_code == 0, result.output
    return db


@pytest.fixture
def queries_file(tmp_path) -> Path:
    path = tmp_path / "queries.jsonl"
    path.write_text("\n".join(json.dumps(q) for q in QUERIES) + "\n\n", encoding="utf-8")
    return path


def run(*args: object):
    return CliRunner().invoke(cli, ["eval", *map(str, args)], env={"EDGE_EMBED_CPU": "1"})


def assert_one_line_error(result, *fragments: str) -> None:
    assert result.exit_code == 2, result.output
    message = result.stderr.strip()
    assert message.startswith("Error: ") and "\n" not in message, message
    for fragment in fragments:
        assert fragment in message, message


def test_keyword_scores_match_hand_computed_values(indexed, queries_file):
    result = run(queries_file, "--db", indexed, "--mode", "keyword", "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["queries"] == 4 and document["k"] == 10
    assert document["modes"]["keyword"] == pytest.approx(EXPECTED_KEYWORD, abs=1e-4)
    by_query = {row["query"]: row for row in document["per_query"]}
    assert by_query["zebra"]["first_hit"] == 2
    assert [Path(p).name for p in by_query["zebra"]["files"]] == ["alpha.md", "beta.md"]
    assert by_query["kangaroo"]["first_hit"] is None and by_query["kangaroo"]["files"] == []


def test_a_beir_folder_is_scored_with_graded_judgments(indexed, tmp_path):
    """BEIR's layout read as it is: corpus ids name files without their extension, the
    qrels' scores are grades, queries judged only in another split are left out."""
    folder = tmp_path / "beir"
    (folder / "qrels").mkdir(parents=True)
    (folder / "queries.jsonl").write_text("\n".join(json.dumps(q) for q in [
        {"_id": "z", "text": "zebra"}, {"_id": "t", "text": "tiger"}, {"_id": "other", "text": "giraffe"}]) + "\n")
    (folder / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\nz\talpha\t1\nz\tbeta\t2\nt\tdelta\t1\nt\tgamma\t0\n")
    (folder / "qrels" / "dev.tsv").write_text("query-id\tcorpus-id\tscore\nother\talpha\t1\n")
    result = run(folder, "--db", indexed, "--mode", "keyword", "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    # zebra: alpha (grade 1) 1st, beta (grade 2) 2nd; the ideal puts beta first
    zebra_ndcg = (1 + 2 / math.log2(3)) / (2 + 1 / math.log2(3))
    assert document["queries"] == 2
    assert document["modes"]["keyword"] == pytest.approx({"recall": 1.0, "mrr": 1.0, "ndcg": (zebra_ndcg + 1) / 2}, abs=1e-4)
    assert [row["relevant"] for row in document["per_query"]] == [{"alpha": 1, "beta": 2}, {"delta": 1}]
    assert json.loads(run(folder, "--db", indexed, "--mode", "keyword", "--split", "dev", "--json").stdout)["queries"] == 1


def test_k_cuts_the_ranking(indexed, queries_file):
    document = json.loads(run(queries_file, "--db", indexed, "--mode", "keyword", "-k", 1, "--json").stdout)
    assert document["modes"]["keyword"]["recall"] == pytest.approx((1 + 0.5 + 0 + 0) / 4)
    assert document["modes"]["keyword"]["mrr"] == pytest.approx((1 + 1 + 0 + 0) / 4)


def test_table_has_every_mode_and_loads_the_model_once(indexed, queries_file, monkeypatch):
    loads = []
    original = api.index_model_handle

    def counting(settings, runtime):
        loads.append(settings)
        return original(settings, runtime)

    monkeypatch.setattr(api, "index_model_handle", counting)
    result = run(queries_file, "--db", indexed)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "4 queries, first 10 files of each ranking"
    assert lines[1].split() == ["mode", "Recall@10", "MRR@10", "nDCG@10"]
    rows = {line.split()[0]: [float(x) for x in line.split()[1:]] for line in lines[2:]}
    assert set(rows) == {"hybrid", "vector", "keyword"}
    assert rows["keyword"] == pytest.approx([EXPECTED_KEYWORD[m] for m in ("recall", "mrr", "ndcg")], abs=1e-3)
    assert all(0 <= value <= 1 for row in rows.values() for value in row)
    assert len(loads) == 1


def test_keyword_only_needs_no_model(indexed, queries_file, monkeypatch):
    def no_model(settings, runtime):
        raise AssertionError("keyword eval loaded the model")

    monkeypatch.setattr(api, "index_model_handle", no_model)
    assert run(queries_file, "--db", indexed, "--mode", "keyword").exit_code == 0


def test_compare_shows_the_change_of_each_mean(indexed, queries_file, tmp_path):
    previous = tmp_path / "before.json"
    previous.write_text(json.dumps({"k": 10, "modes": {"keyword": {"recall": 0.5, "mrr": 0.7, "ndcg": 0.5}}}))
    as_json = json.loads(run(queries_file, "--db", indexed, "--mode", "keyword", "--json", "--compare", previous).stdout)
    change = as_json["compare"]["change"]["keyword"]
    assert change["recall"] == pytest.approx(0.125, abs=1e-4)
    assert change["mrr"] == pytest.approx(-0.075, abs=1e-4)
    table = run(queries_file, "--db", indexed, "--mode", "keyword", "--compare", previous)
    assert "0.625 (+0.125)" in table.stdout and "0.625 (-0.075)" in table.stdout


def test_bad_lines_are_one_line_errors_naming_the_line(indexed, tmp_path):
    cases = {
        '{"query": "x", "relevant": ["a.md"]}\nnot json\n': "line 2 is not valid JSON",
        '\n{"query": "x"}\n': 'line 2: "relevant"',
        '{"query": "", "relevant": ["a.md"]}\n': 'line 1: "query"',
        '["x"]\n': "line 1 must be a JSON object",
        "\n\n": "has no queries",
    }
    for number, (text, fragment) in enumerate(cases.items()):
        path = tmp_path / f"q{number}.jsonl"
        path.write_text(text, encoding="utf-8")
        assert_one_line_error(run(path, "--db", indexed, "--mode", "keyword"), fragment)


def test_user_mistakes_are_one_line_errors(indexed, queries_file, tmp_path):
    assert_one_line_error(run(tmp_path / "none.jsonl", "--db", indexed), "cannot read the queries file")
    assert_one_line_error(run(queries_file, "--db", indexed, "--mode", "hybrid,fuzzy"), "unknown --mode fuzzy")
    assert_one_line_error(run(queries_file, "--db", tmp_path / "none.db"), "no index at")
    (tmp_path / "bad.json").write_text("{}")
    assert_one_line_error(run(queries_file, "--db", indexed, "--compare", tmp_path / "bad.json"), '"modes"')


def test_rerank_adds_a_reranked_row_per_mode(indexed, queries_file, tmp_path) -> None:
    """--rerank scores each mode twice: as it ranks, and reranked (rows MODE+rerank)."""
    from edge_embed.testing.reranker import write_tiny_qwen3_reranker

    reranker = write_tiny_qwen3_reranker(tmp_path / "tiny-reranker.gguf")
    args = (queries_file, "--db", indexed, "--mode", "keyword", "--rerank", "--reranker", reranker.path)
    table = run(*args)
    assert table.exit_code == 0, table.output
    rows = {line.split()[0]: line.split()[1:] for line in table.stdout.splitlines()[2:]}
    assert set(rows) == {"keyword", "keyword+rerank"}
    assert float(rows["keyword"][0]) == pytest.approx(EXPECTED_KEYWORD["recall"], abs=1e-3)
    document = json.loads(run(*args, "--json").stdout)
    assert set(document["modes"]) == {"keyword", "keyword+rerank"}
    reranked = [q for q in document["per_query"] if q["mode"] == "keyword+rerank"]
    assert len(reranked) == len(QUERIES)


def test_rerank_without_the_reranker_is_one_line(indexed, queries_file, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.delenv("EDGE_EMBED_RERANKER", raising=False)
    result = run(queries_file, "--db", indexed, "--mode", "keyword", "--rerank")
    assert result.exit_code == 2 and result.output.count("\n") == 1, result.output
    assert "edge-embed pull qwen3-reranker-0.6b" in result.output
