"""The metric functions and query readers of edge_embed.evaluate against hand-computed values."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from edge_embed.errors import EdgeEmbedError
from edge_embed.evaluate import (
    Scores,
    compare,
    gains,
    load_queries,
    mean_scores,
    ndcg_at_k,
    path_matches,
    reciprocal_rank,
    recall_at_k,
    score_ranking,
)


@pytest.mark.parametrize(
    ("path", "relevant", "expected"),
    [
        ("/corpus/docs/setup.md", "setup.md", True),
        ("/corpus/docs/setup.md", "docs/setup.md", True),
        ("/corpus/docs/setup.md", "./docs/setup.md", True),
        ("/corpus/docs/setup.md", "/corpus/docs/setup.md", True),
        ("/corpus/docs/setup.md", "etup.md", False),  # not a whole component
        ("/corpus/docs/setup.md", "other/setup.md", False),
        ("/corpus/docs/setup.md", "docs", False),
        ("setup.md", "a/setup.md", False),
        ("/corpus/abstracts/4983.txt", "4983", True),  # a BEIR corpus id: the name without its extension
        ("/corpus/abstracts/4983.txt", "abstracts/4983", True),
        ("/corpus/abstracts/49830.txt", "4983", False),
        ("/corpus/4983/other.txt", "4983", False),  # a folder of that name is not the file
        ("/corpus/docs/setup.md", "setup.txt", False),
    ],
)
def test_path_matches_whole_trailing_components(path, relevant, expected):
    assert path_matches(path, relevant) is expected


def test_gains_count_each_relevant_entry_once():
    paths = ["/a/x.md", "/b/x.md", "/c/y.md"]
    assert gains(paths, {"x.md": 1}) == [1, 0, 0]
    assert gains(paths, {"x.md": 1, "y.md": 1}) == [1, 0, 1]
    assert gains(paths, {"x.md": 1, "y.md": 3}) == [1, 0, 3], "each result gains its entry's grade"


def test_metrics_on_a_ranking():
    gain = [0, 1, 0, 1]  # two of three relevant files, at ranks 2 and 4
    assert recall_at_k(gain, 3, 10) == pytest.approx(2 / 3)
    assert recall_at_k(gain, 3, 2) == pytest.approx(1 / 3)
    assert reciprocal_rank(gain, 10) == 0.5
    assert reciprocal_rank(gain, 1) == 0.0
    ideal = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    assert ndcg_at_k(gain, [1, 1, 1], 10) == pytest.approx((1 / math.log2(3) + 1 / math.log2(5)) / ideal)


def test_ndcg_ideal_is_capped_at_k():
    assert ndcg_at_k([1, 1], [1] * 5, 2) == pytest.approx(1.0)


def test_graded_ndcg_is_trec_evals_linear_gain():
    """Grades 2 and 1; the grade-1 file first: DCG 1 + 2/log2(3), ideal 2 + 1/log2(3)."""
    scores, first = score_ranking(["/c/b.md", "/c/z.md", "/c/a.md"], {"a.md": 2, "b.md": 1}, 10)
    assert first == 1
    assert scores.ndcg == pytest.approx((1 + 2 / math.log2(4)) / (2 + 1 / math.log2(3)))
    assert (scores.recall, scores.mrr) == (1.0, 1.0), "Recall and MRR count any grade of 1 or more"


def test_score_ranking_and_means():
    scores, first = score_ranking(["/c/z.md", "/c/a.md"], {"a.md": 1}, 10)
    assert first == 2 and scores == Scores(1.0, 0.5, pytest.approx(1 / math.log2(3)))
    assert score_ranking([], {"a.md": 1}, 10) == (Scores(0.0, 0.0, 0.0), None)
    assert mean_scores([Scores(1, 1, 1), Scores(0, 0.5, 0)]) == Scores(0.5, 0.75, 0.5)


def test_compare_subtracts_only_shared_modes_and_metrics():
    current = {"hybrid": Scores(0.8, 0.6, 0.7), "vector": Scores(0.5, 0.5, 0.5)}
    previous = {"hybrid": {"recall": 0.75, "mrr": 0.7}, "keyword": {"recall": 1.0}}
    assert compare(current, previous) == {"hybrid": {"recall": 0.05, "mrr": -0.1}}


def test_compare_skips_values_that_are_not_numbers() -> None:
    """A hand-edited or foreign --compare file must not end in a TypeError traceback."""
    current = {"hybrid": Scores(recall=0.5, mrr=0.25, ndcg=0.4)}
    previous = {"hybrid": {"recall": None, "mrr": "high", "ndcg": 0.3, "extra": 1.0}}
    assert compare(current, previous) == {"hybrid": {"ndcg": 0.1}}


# ---------------------------------------------------------------------- reading queries
def write_lines(path: Path, lines: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_our_format_takes_a_list_or_graded_answers(tmp_path):
    path = write_lines(tmp_path / "q.jsonl", [
        json.dumps({"query": "one", "relevant": ["a.md", "b.md"]}),
        json.dumps({"query": "two", "relevant": "c.md"}),
        json.dumps({"query": "three", "relevant": {"a.md": 2, "d.md": 0, "e.md": 1}}),
    ])
    queries = load_queries(path)
    assert [dict(q.relevant) for q in queries] == [{"a.md": 1, "b.md": 1}, {"c.md": 1}, {"a.md": 2, "e.md": 1}]


@pytest.mark.parametrize("relevant", [{"a.md": -1}, {"a.md": 1.5}, {"a.md": True}, {"a.md": 0}, {}, [], [""]])
def test_bad_grades_are_errors_naming_the_line(tmp_path, relevant):
    path = write_lines(tmp_path / "q.jsonl", [json.dumps({"query": "fine", "relevant": ["a.md"]}),
                                              json.dumps({"query": "x", "relevant": relevant})])
    with pytest.raises(EdgeEmbedError, match="line 2"):
        load_queries(path)


def beir_folder(base: Path) -> Path:
    """A BEIR-layout folder: queries for two splits, graded judgments, a grade-0 line."""
    folder = base / "set"
    write_lines(folder / "queries.jsonl", [
        json.dumps({"_id": "q1", "text": "first claim", "metadata": {}}),
        json.dumps({"_id": "q2", "text": "second claim"}),
        "",
        json.dumps({"_id": "q3", "text": "a training claim"}),
        json.dumps({"_id": "q4", "text": "only judged not relevant"}),
    ])
    write_lines(folder / "qrels" / "test.tsv", [
        "query-id\tcorpus-id\tscore", "q1\t4983\t1", "q2\t10\t2", "q2\t11\t1", "q4\t12\t0"])
    write_lines(folder / "qrels" / "train.tsv", ["query-id\tcorpus-id\tscore", "q3\t7\t1"])
    return folder


def test_a_beir_folder_is_read_with_its_split(tmp_path):
    folder = beir_folder(tmp_path)
    test = load_queries(folder)
    assert [(q.line, q.text, dict(q.relevant)) for q in test] == [
        (1, "first claim", {"4983": 1}),
        (2, "second claim", {"10": 2, "11": 1}),
    ]  # q3 is judged in train only, q4 only with grade 0
    assert [q.text for q in load_queries(folder, "train")] == ["a training claim"]


def test_beir_mistakes_are_errors_that_say_what_is_wrong(tmp_path):
    folder = beir_folder(tmp_path)
    with pytest.raises(EdgeEmbedError, match="dev.tsv"):
        load_queries(folder, "dev")
    write_lines(folder / "qrels" / "bad.tsv", ["query-id\tcorpus-id\tscore", "q1 4983 1"])
    with pytest.raises(EdgeEmbedError, match="bad.tsv line 2"):
        load_queries(folder, "bad")
    write_lines(folder / "qrels" / "none.tsv", ["query-id\tcorpus-id\tscore", "q9\t1\t1"])
    with pytest.raises(EdgeEmbedError, match="no query"):
        load_queries(folder, "none")
