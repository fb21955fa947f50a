"""The metric functions of edge_embed.evaluate against hand-computed values."""

from __future__ import annotations

import math

import pytest

from edge_embed.evaluate import Scores, compare, gains, mean_scores, ndcg_at_k, path_matches, reciprocal_rank, recall_at_k, score_ranking


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
    ],
)
def test_path_matches_whole_trailing_components(path, relevant, expected):
    assert path_matches(path, relevant) is expected


def test_gains_count_each_relevant_entry_once():
    paths = ["/a/x.md", "/b/x.md", "/c/y.md"]
    assert gains(paths, ["x.md"]) == [1, 0, 0]
    assert gains(paths, ["x.md", "y.md"]) == [1, 0, 1]


def test_metrics_on_a_ranking():
    gain = [0, 1, 0, 1]  # two of three relevant files, at ranks 2 and 4
    assert recall_at_k(gain, 3, 10) == pytest.approx(2 / 3)
    assert recall_at_k(gain, 3, 2) == pytest.approx(1 / 3)
    assert reciprocal_rank(gain, 10) == 0.5
    assert reciprocal_rank(gain, 1) == 0.0
    ideal = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    assert ndcg_at_k(gain, 3, 10) == pytest.approx((1 / math.log2(3) + 1 / math.log2(5)) / ideal)


def test_ndcg_ideal_is_capped_at_k():
    assert ndcg_at_k([1, 1], 5, 2) == pytest.approx(1.0)


def test_score_ranking_and_means():
    scores, first = score_ranking(["/c/z.md", "/c/a.md"], ["a.md"], 10)
    assert first == 2 and scores == Scores(1.0, 0.5, pytest.approx(1 / math.log2(3)))
    assert score_ranking([], ["a.md"], 10) == (Scores(0.0, 0.0, 0.0), None)
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
