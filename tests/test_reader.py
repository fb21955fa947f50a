"""MCP `get`'s reading rule (edge_embed.reader) against real indexes, links and big files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from serving import CPU

from edge_embed.api import Index
from edge_embed.errors import EdgeEmbedError
from edge_embed.api import IndexRequest
from edge_embed.reader import read_indexed
from edge_embed.testing.documents import pdf_bytes


@pytest.fixture
def notes(tmp_path: Path, tiny_model) -> tuple[Index, Path]:
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "a.md").write_text("# A\nfirst\nsecond\nthird\n", encoding="utf-8")
    (folder / "big.txt").write_text("one\ntwo\nthree\n", encoding="utf-8")
    (folder / ".env").write_text("TOKEN=hunter2\n", encoding="utf-8")
    (folder / "manual.pdf").write_bytes(pdf_bytes([["Install the tool."], ["Rotate the keys.", "Every ninety days."]]))
    index = Index.open(tmp_path / "index.db", CPU)
    index.index([folder], IndexRequest(chunk_tokens=128, overlap=0), model=str(tiny_model.path))
    return index, folder


def test_an_indexed_file_replaced_by_a_link_to_a_hidden_file_is_refused(notes) -> None:
    """Issue 16, defect 6: a.md was indexed; now it points at .env, which never was."""
    index, folder = notes
    assert read_indexed(index, str(folder / "a.md"), 2, 3) == "first\nsecond"
    (folder / "a.md").unlink()
    (folder / "a.md").symlink_to(".env")
    with pytest.raises(EdgeEmbedError, match="not an indexed file") as refused:
        read_indexed(index, str(folder / "a.md"))
    assert "hunter2" not in str(refused.value)


def test_a_link_to_another_indexed_file_reads_that_file(notes) -> None:
    index, folder = notes
    (folder / "alias.md").symlink_to("a.md")  # planted later, but its target is indexed
    assert read_indexed(index, str(folder / "alias.md"), 1, 2) == "# A\nfirst"
    (folder / "out.md").symlink_to(folder.parent / "index.db")
    with pytest.raises(EdgeEmbedError, match="not inside an indexed folder"):
        read_indexed(index, str(folder / "out.md"))


def rchar() -> int:
    """Bytes this process has read through read(2) so far (Linux)."""
    with open("/proc/self/io", encoding="ascii") as io_stats:
        return int(next(line for line in io_stats if line.startswith("rchar:")).split()[1])


@pytest.mark.skipif(not Path("/proc/self/io").exists(), reason="needs /proc/self/io to count bytes read")
def test_every_read_is_capped_and_a_line_range_reads_no_further(notes) -> None:
    """big.txt grew to 4 GiB after indexing (sparse: a 4 GiB 'line' of NULs after three lines)."""
    index, folder = notes
    big = folder / "big.txt"
    with open(big, "r+b") as grown:
        grown.truncate(4 * 1024**3)
    before = rchar()
    assert read_indexed(index, str(big), 1, 2) == "one\ntwo"
    whole = read_indexed(index, str(big), max_bytes=64 * 1024)
    assert whole.startswith("one\ntwo\nthree\n")
    assert whole.endswith("ends in line 3: ask for start_line=4 to read on]")
    assert len(whole.encode()) < 64 * 1024 + 200
    from_four = read_indexed(index, str(big), 4, None, max_bytes=1000)
    assert "[cut: answers stop at 1000 bytes" in from_four
    assert rchar() - before < 64 * 1024**2, "the reads went far past what they answered"


def test_a_pdf_answers_its_text_with_page_numbers(notes) -> None:
    index, folder = notes
    text = read_indexed(index, str(folder / "manual.pdf"))
    assert "%PDF" not in text
    assert text.index("[page 1]") < text.index("Install the tool.") < text.index("[page 2]") < text.index("Rotate the keys.")
    lines = [line for line in text.split("\n") if not line.startswith("[page ")]
    later = lines.index("Every ninety days.") + 1  # page lines are not counted
    assert read_indexed(index, str(folder / "manual.pdf"), later, later) == "[page 2]\nEvery ninety days."


def test_lines_past_the_end_are_an_error_that_counts_them(notes) -> None:
    index, folder = notes
    with pytest.raises(EdgeEmbedError, match=r"no lines 9-12 in .* \(it has 4\)"):
        read_indexed(index, str(folder / "a.md"), 9, 12)
    assert os.path.exists(folder / "a.md")
