"""`index` says what it will embed and how long that takes, before it embeds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from edge_embed import estimate
from edge_embed.cli import cli
from edge_embed.cli.index import TtyProgress, describe_estimate
from edge_embed.estimate import Estimate
from edge_embed.cli.wording import cli_text
from edge_embed.indexer import slow_run_note


@pytest.fixture(autouse=True)
def own_rates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Rates other tests recorded must not turn a "planned" estimate into a "measured" one."""
    monkeypatch.setenv("EDGE_EMBED_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def notes(tmp_path: Path) -> Path:
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "a.md").write_text("# A\n\n" + "alpha beta gamma delta " * 200)
    (folder / "b.txt").write_text("just a short note about keys\n")
    return folder


def index_json(notes: Path, tiny_model, db: Path) -> dict:
    result = CliRunner().invoke(
        cli, ["index", str(notes), "--db", str(db), "--model", str(tiny_model.path), "--threads", "1", "--json"]
    )
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_the_json_summary_has_the_estimate_of_the_changed_files(notes, tiny_model, tmp_path) -> None:
    summary = index_json(notes, tiny_model, tmp_path / "x.db")
    expected_tokens = sum(estimate.estimated_tokens(p.name, p.stat().st_size) for p in notes.iterdir())
    assert summary["estimate"]["files"] == 2 and summary["estimate"]["tokens"] == expected_tokens
    assert summary["estimate"]["basis"] == "planned" and summary["estimate"]["tokens_per_s"] > 0
    assert summary["estimate"]["seconds"] is not None
    again = index_json(notes, tiny_model, tmp_path / "x.db")
    assert again["estimate"] is None, "nothing changed: nothing to estimate"


def test_a_measured_rate_is_remembered_and_used_next_time(notes, tiny_model, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(estimate, "MIN_MEASURED_TOKENS", 10)
    first = index_json(notes, tiny_model, tmp_path / "one.db")
    assert first["tokens_embedded"] >= 10
    second = index_json(notes, tiny_model, tmp_path / "two.db")
    assert second["estimate"]["basis"] == "measured"
    assert second["estimate"]["tokens_per_s"] != first["estimate"]["tokens_per_s"]


def test_a_run_too_short_to_measure_records_nothing(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("EDGE_EMBED_CACHE", str(tmp_path))
    estimate.record_rate("k", estimate.MIN_MEASURED_TOKENS - 1, 1.0)
    assert estimate.recorded_rate("k") is None
    estimate.record_rate("k", 5000, 2.0)
    assert estimate.recorded_rate("k") == 2500.0


def test_documents_count_fewer_tokens_per_byte_than_text() -> None:
    assert estimate.estimated_tokens("report.pdf", 20_000) < estimate.estimated_tokens("notes.md", 20_000)


def test_a_long_cpu_run_names_the_faster_model_when_it_is_faster() -> None:
    from edge_embed.catalog import get_entry
    from edge_embed.runtime.plan import catalog_shape

    big, small = (catalog_shape(get_entry(name)).parameters for name in ("qwen3-embedding-4b", "qwen3-embedding-0.6b"))
    slow = Estimate(files=900, tokens=1_000_000, tokens_per_s=20.0, basis="planned")
    note = slow_run_note("cpu", big, slow)
    assert note is not None and "13h53m on the CPU" in str(note) and "qwen3-embedding-0.6b is ~7x faster" in str(note)
    assert str(note).endswith("faster: model qwen3-embedding-0.6b (an existing index: with rebuild=True)")
    assert cli_text(note).endswith("faster: --model qwen3-embedding-0.6b (an existing index: with --rebuild)")
    assert slow_run_note("cpu", small, slow) is None, "already the fast one"
    assert slow_run_note("cpu", small // 4, slow) is None, "a smaller model (MiniLM) is not told to switch"
    assert slow_run_note("cuda", big, slow) is None, "not on a GPU"
    quick = Estimate(files=3, tokens=2_000, tokens_per_s=20.0, basis="planned")
    assert slow_run_note("cpu", big, quick) is None


def test_the_terminal_shows_the_estimate_and_counts_it_down(capsys) -> None:
    progress = TtyProgress()
    progress.estimated(Estimate(files=2, tokens=1_000, tokens_per_s=100.0, basis="measured"), "use the small model")
    err = capsys.readouterr().err
    assert "to embed: about 1,000 tokens in 2 changed files, ~10s at 100 tokens/s (measured)" in err
    assert "note: use the small model" in err
    assert progress.seconds_left(elapsed=1.0) == pytest.approx(10.0)
    progress.embedded(texts=1, tokens=500)
    assert progress.seconds_left(elapsed=10.0) == pytest.approx(10.0), "500 left at the measured 50 tokens/s"
    unknown = Estimate(files=1, tokens=10, tokens_per_s=None, basis="planned")
    assert "shows once the first batch" in describe_estimate(unknown)
