"""Numbers a user (or a script) can pass that once crashed or silently misled every command."""

from __future__ import annotations

import os

import pytest
from click.testing import CliRunner

from edge_embed.cli import cli
from edge_embed.errors import EdgeEmbedError
from edge_embed.search import SearchOptions

RUNTIME_COMMANDS = (["embed", "x"], ["index", "."], ["query", "x"], ["serve"], ["mcp"], ["doctor"], ["eval", "q.jsonl"])


@pytest.mark.parametrize("command", RUNTIME_COMMANDS, ids=lambda c: c[0])
@pytest.mark.parametrize("threads", ["0", str((os.cpu_count() or 1) + 1), "65535"])
def test_threads_is_bounded_by_the_machine(command, threads) -> None:
    """65,535 threads segfaulted llama.cpp, 40,000 failed in libgomp: refused before any work."""
    result = CliRunner().invoke(cli, [*command, "--threads", threads])
    assert result.exit_code == 2, result.output
    assert "--threads" in result.stderr and f"1<=x<={os.cpu_count() or 1}" in result.stderr
    assert "Traceback" not in result.output


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e400"])
def test_min_score_must_be_finite(value) -> None:
    result = CliRunner().invoke(cli, ["query", "x", "--min-score", value])
    assert result.exit_code == 2 and "is not a finite number" in result.stderr, result.output


def test_the_library_refuses_a_min_score_that_is_not_a_number() -> None:
    with pytest.raises(EdgeEmbedError, match="finite"):
        SearchOptions(min_score=float("nan"))
    assert SearchOptions(min_score=0.5).min_score == 0.5
