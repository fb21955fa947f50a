"""Tests for edge_embed.documents: PDF and Word text, headings, pages, and the sandbox.

Every document is generated here (edge_embed.testing.documents), none is kept in git.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edge_embed.documents import Document, Limits, Unextractable, extract
from edge_embed.documents.sandbox import Sandbox
from edge_embed.testing.documents import (
    docx_bytes,
    pdf_bytes,
    scanned_pdf_bytes,
    table_pdf_bytes,
    two_column_pdf_bytes,
)

LIMITS = Limits()


def page_texts(document: Document) -> dict[int, str]:
    """The text of each page, by page number, from the layout's page starts."""
    lines = document.text.split("\n")
    starts = list(document.layout.pages) + [(len(lines), 0)]
    return {number: "\n".join(lines[line:end]).strip("\n") for (line, number), (end, _) in zip(starts, starts[1:])}


def headings(document: Document) -> list[tuple[str, int, int]]:
    """(title, level, page) of each heading."""
    pages = document.layout.pages
    return [
        (title, level, max(number for start, number in pages if start <= line))
        for line, level, title in document.layout.headings
    ]


def unextractable(document_format: str, data: bytes, limits: Limits = LIMITS) -> tuple[str, str]:
    with pytest.raises(Unextractable) as caught:
        extract(document_format, data, limits)
    return caught.value.reason, caught.value.detail


# --- PDF ------------------------------------------------------------------------------
def test_pdf_text_is_on_its_own_page() -> None:
    pages = [[f"Sentence number {n} is printed on page {n} of the manual."] for n in range(1, 10)]
    document = extract("pdf", pdf_bytes(pages), LIMITS)
    assert page_texts(document) == {n: f"Sentence number {n} is printed on page {n} of the manual." for n in range(1, 10)}


def test_pdf_cjk_text_comes_out_as_written() -> None:
    document = extract("pdf", pdf_bytes([["Latin first page."], ["向量检索把文本变成数字。", "第二段：离线语义搜索。"]]), LIMITS)
    assert page_texts(document)[2] == "向量检索把文本变成数字。\n\n第二段：离线语义搜索。"


def test_pdf_two_columns_are_read_column_by_column() -> None:
    left = ["The left column starts the story and explains the first idea in several lines of text."]
    right = ["The right column continues the story after the left one has ended completely."]
    document = extract("pdf", two_column_pdf_bytes("Two Column Title", left, right), LIMITS)
    paragraphs = [" ".join(p.split("\n")) for p in document.text.split("\n\n")]
    assert paragraphs == ["Two Column Title", left[0], right[0]]


def test_pdf_table_is_read_row_by_row_not_as_columns() -> None:
    rows = [["Part", "Torque", "Check"], ["Bolt M8", "25 Nm", "yearly"], ["Bolt M10", "49 Nm", "monthly"]]
    document = extract("pdf", table_pdf_bytes(rows), LIMITS)
    assert document.text == "Part Torque Check\nBolt M8 25 Nm yearly\nBolt M10 49 Nm monthly"


def test_pdf_outline_entries_become_headings_on_the_line_with_their_title() -> None:
    pages = [["Preface text."], ["Installing", "Run the installer."], ["More install notes.", "GPU setup", "Use CUDA."]]
    outline = [("Installing", 1, 0), ("GPU setup", 2, 1), ("Not printed anywhere", 2, 1)]
    document = extract("pdf", pdf_bytes(pages, outline=outline), LIMITS)
    assert headings(document) == [("Installing", 1, 2), ("GPU setup", 2, 3), ("Not printed anywhere", 2, 3)]
    lines = document.text.split("\n")
    assert [lines[line] for line, _, _ in document.layout.headings[:2]] == ["Installing", "GPU setup"]


def test_pdf_without_outline_takes_large_font_lines_as_headings() -> None:
    pages = [["# Getting started", "Body text " * 20], ["More body text " * 10, "# Troubleshooting", "Body " * 30]]
    document = extract("pdf", pdf_bytes(pages), LIMITS)
    assert headings(document) == [("Getting started", 1, 1), ("Troubleshooting", 1, 2)]


def test_scanned_pdf_is_skipped_as_having_no_text_layer() -> None:
    assert unextractable("pdf", scanned_pdf_bytes()) == ("no-text", "no text layer: scanned?")


def test_encrypted_pdf_is_skipped() -> None:
    assert unextractable("pdf", pdf_bytes([["secret plans"]], password="hunter2"))[0] == "encrypted"


def test_truncated_pdf_is_skipped_as_damaged() -> None:
    data = pdf_bytes([[f"page {n} text " * 40] for n in range(6)])
    assert unextractable("pdf", data[: len(data) // 2])[0] == "damaged"


def test_pdf_over_the_page_limit_is_skipped_before_reading_pages() -> None:
    reason, detail = unextractable("pdf", pdf_bytes([["a"], ["b"], ["c"]]), Limits(max_pages=2))
    assert (reason, detail) == ("too-large", "3 pages, over the 2-page limit")


# --- Word -----------------------------------------------------------------------------
WORD_BLOCKS = [
    ("header", "CONFIDENTIAL header on every page"),
    ("footer", "Page footer text"),
    ("heading1", "Quarterly report"),
    ("paragraph", "Revenue grew in every region."),
    ("heading2", "Figures"),
    ("table", [["Region", "Revenue"], ["North", "120"], ["South", "95"]]),
    ("page-break", None),
    ("heading1", "Outlook"),
    ("paragraph", "Next year looks brighter."),
]


def test_docx_headings_tables_and_page_breaks() -> None:
    document = extract("docx", docx_bytes(WORD_BLOCKS), LIMITS)
    assert document.text == (
        "Quarterly report\n\nRevenue grew in every region.\n\nFigures\n\n"
        "Region | Revenue\nNorth | 120\nSouth | 95\n\nOutlook\n\nNext year looks brighter."
    )
    assert headings(document) == [("Quarterly report", 1, 1), ("Figures", 2, 1), ("Outlook", 1, 2)]


def test_docx_without_page_breaks_has_no_pages() -> None:
    document = extract("docx", docx_bytes([("heading1", "Notes"), ("paragraph", "Just text.")]), LIMITS)
    assert document.layout.pages == ()


def test_docx_that_unpacks_too_large_is_skipped_before_parsing() -> None:
    data = docx_bytes([("paragraph", "x" * 100_000)])
    assert unextractable("docx", data, Limits(max_unpacked_bytes=50_000))[0] == "too-large"


def test_a_valid_docx_over_the_xml_size_limits_is_too_large_not_damaged() -> None:
    """11 MB of text in one paragraph: libxml2 refuses such a text node unless told to parse huge input."""
    reason, detail = unextractable("docx", docx_bytes([("paragraph", "word " * 2_200_000)]))
    assert reason == "too-large" and "size limits" in detail


def test_broken_docx_is_skipped_as_damaged() -> None:
    assert unextractable("docx", b"PK\x03\x04 not really a zip")[0] == "damaged"


# --- the sandbox ----------------------------------------------------------------------
def hanging_extractor(document_format: str, data: bytes, limits: Limits) -> Document:
    """A parser stuck on a hostile file (a fake, swapped in through Sandbox(extractor=...))."""
    if data == b"hang":
        time.sleep(3600)
    return extract(document_format, data, limits)


def crashing_extractor(document_format: str, data: bytes, limits: Limits) -> Document:
    os._exit(3)


def allocating_extractor(document_format: str, data: bytes, limits: Limits) -> Document:
    """A decompression bomb: tries to hold 4 GiB."""
    blocks = [bytearray(256 * 1024**2) for _ in range(16)]
    raise AssertionError(f"the memory cap did not stop {len(blocks)} blocks")


def test_sandbox_reuses_one_worker_across_files() -> None:
    data = pdf_bytes([["hello from a small pdf"]])
    with Sandbox(LIMITS) as sandbox:
        texts = [sandbox.extract("pdf", data).text for _ in range(5)]
        with pytest.raises(Unextractable):
            sandbox.extract("pdf", b"%PDF-1.4 broken")
        texts.append(sandbox.extract("pdf", data).text)
        assert texts == ["hello from a small pdf"] * 6
        assert sandbox.starts == 1  # a skipped file does not cost a new process


@pytest.mark.skipif(os.name != "posix", reason="POSIX signals")
def test_sandbox_worker_ignores_ctrl_c() -> None:
    """A terminal's Ctrl-C reaches the worker too; the indexer, not the worker, decides."""
    data = pdf_bytes([["still here"]])
    with Sandbox(LIMITS) as sandbox:
        sandbox.extract("pdf", data)
        os.kill(sandbox._process.pid, signal.SIGINT)
        time.sleep(1.0)
        assert sandbox._process.is_alive()
        assert sandbox.extract("pdf", data).text == "still here"
        assert sandbox.starts == 1


def test_sandbox_times_out_a_hanging_parser_and_carries_on() -> None:
    data = pdf_bytes([["after the hang"]])
    with Sandbox(Limits(timeout_s=1.5), extractor=hanging_extractor) as sandbox:
        started = time.monotonic()
        with pytest.raises(Unextractable) as caught:
            sandbox.extract("pdf", b"hang")
        assert caught.value.reason == "timed-out"
        assert time.monotonic() - started < 30
        assert sandbox.extract("pdf", data).text == "after the hang"
        assert sandbox.starts == 2


def _process_gone(pid: int) -> bool:
    """Gone, or a zombie waiting for a reaper (this container's init may not reap)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as status:
            return status.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False


@pytest.mark.skipif(os.name != "posix", reason="SIGKILL")
def test_the_worker_dies_with_its_parent_killed_mid_extraction(tmp_path: Path) -> None:
    """kill -9 of `index` during a slow document once left its worker parsing for minutes."""
    parent = subprocess.Popen(
        [sys.executable, "-c", (
            "import sys; from edge_embed.documents import Limits; from edge_embed.documents.sandbox import Sandbox;"
            "from test_documents import hanging_extractor;"
            "sandbox = Sandbox(Limits(timeout_s=600), extractor=hanging_extractor); sandbox._connection();"
            "print(sandbox._process.pid, flush=True); sandbox.extract('pdf', b'hang')"
        )],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    try:
        worker = int(parent.stdout.readline())
        time.sleep(0.5)  # the worker is now inside the hanging parser
        assert not _process_gone(worker)
    finally:
        parent.kill()
        parent.wait()
    deadline = time.monotonic() + 5
    while not _process_gone(worker):
        assert time.monotonic() < deadline, f"worker {worker} outlived its parent"
        time.sleep(0.1)


def test_sandbox_survives_a_crashing_parser() -> None:
    with Sandbox(LIMITS, extractor=crashing_extractor) as sandbox:
        with pytest.raises(Unextractable) as caught:
            sandbox.extract("pdf", b"anything")
    assert (caught.value.reason, caught.value.detail) == ("crashed", "the extraction worker died (exit code 3)")


@pytest.mark.skipif(os.name != "posix" or os.uname().sysname == "Darwin", reason="RLIMIT_AS is enforced on Linux only")
def test_sandbox_memory_cap_stops_a_decompression_bomb() -> None:
    with Sandbox(Limits(memory_bytes=768 * 1024**2), extractor=allocating_extractor) as sandbox:
        with pytest.raises(Unextractable) as caught:
            sandbox.extract("pdf", b"bomb")
    assert caught.value.reason == "too-large"
