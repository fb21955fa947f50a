"""PDF and Word files through the indexing pipeline, with the tiny real model and a real store."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from edge_embed.documents import Limits
from edge_embed.documents.sandbox import Sandbox
from edge_embed.indexer import IndexOptions, Indexer, NoProgress
from edge_embed.runtime.loader import ModelHandle
from edge_embed.store import Store
from edge_embed.testing.documents import docx_bytes, pdf_bytes, scanned_pdf_bytes
from test_documents import WORD_BLOCKS, crashing_extractor, hanging_extractor
from test_indexer import CountingEmbedder, engine, store  # noqa: F401  (engine and store are fixtures)

MANUAL_PAGES = [[f"# Chapter {n}", f"The manual says on page {n} that step {n} comes next."] for n in range(1, 10)]


class Warnings(NoProgress):
    def __init__(self) -> None:
        self.messages: list[str] = []

    def warning(self, message) -> None:
        self.messages.append(str(message))  # in neutral words (a Phrase each face words)


@pytest.fixture
def library(tmp_path) -> Path:
    root = tmp_path / "library"
    root.mkdir()
    (root / "manual.pdf").write_bytes(pdf_bytes(MANUAL_PAGES))
    (root / "report.docx").write_bytes(docx_bytes(WORD_BLOCKS))
    (root / "notes.md").write_text("# Notes\n\nPlain text still works.\n")
    (root / "downloaded-without-extension").write_bytes(pdf_bytes([["A PDF found by its first bytes."]]))
    (root / "scan.pdf").write_bytes(scanned_pdf_bytes())
    (root / "locked.pdf").write_bytes(pdf_bytes([["secret"]], password="pw"))
    manual = pdf_bytes(MANUAL_PAGES)
    (root / "truncated.pdf").write_bytes(manual[: len(manual) // 2])
    return root


def run(store: Store, engine: CountingEmbedder, root: Path, sandbox: Sandbox | None = None, progress=None):
    engine.calls = []
    indexer = Indexer(
        store, ModelHandle.from_embedder(engine), IndexOptions(chunk_tokens=128, overlap=8),
        progress=progress or NoProgress(), sandbox=sandbox,
    )
    return indexer.run([root])


def stored_texts(store: Store, relpath: str) -> list[str]:
    rows = store._conn.execute(
        "SELECT c.text FROM chunks c JOIN files f ON f.id = c.file_id WHERE f.relpath = ? ORDER BY c.seq", (relpath,)
    ).fetchall()
    return [row[0] for row in rows]


def test_documents_are_indexed_and_bad_ones_skipped_with_a_note(store, engine, library):
    warnings = Warnings()
    summary = run(store, engine, library, progress=warnings)
    assert summary.indexed == 4  # manual.pdf, report.docx, notes.md, the PDF without extension
    assert dict(summary.skipped) == {"no-text": 1, "encrypted": 1, "damaged": 1}
    assert "skipped scan.pdf: no-text (no text layer: scanned?)" in warnings.messages
    assert "Chapter 7\n\nThe manual says on page 7 that step 7 comes next." in stored_texts(store, "manual.pdf")
    assert "Region | Revenue\nNorth | 120\nSouth | 95" in "\n".join(stored_texts(store, "report.docx"))
    assert "CONFIDENTIAL" not in "\n".join(stored_texts(store, "report.docx"))  # headers are left out
    assert stored_texts(store, "downloaded-without-extension") == ["A PDF found by its first bytes."]
    assert store.maintenance.integrity_check() == "ok"


def test_unchanged_documents_are_neither_extracted_nor_embedded_again(store, engine, library):
    """Also those without text: the same bytes would fail the same way."""
    run(store, engine, library)
    with Sandbox() as sandbox:
        summary = run(store, engine, library, sandbox=sandbox)
        os.utime(library / "manual.pdf", ns=(1_000_000_000, 1_000_000_000))  # touched, same bytes
        touched = run(store, engine, library, sandbox=sandbox)
        assert sandbox.starts == 0  # no document was parsed
    assert engine.calls == []
    assert summary.unchanged == touched.unchanged == 7 and summary.indexed == touched.indexed == 0
    assert summary.skipped == touched.skipped == {}


def test_a_hanging_parser_costs_the_timeout_and_the_run_goes_on(store, engine, tmp_path):
    root = tmp_path / "hostile"
    root.mkdir()
    (root / "a-hang.pdf").write_bytes(b"hang")  # the fake extractor hangs on exactly these bytes
    (root / "b-fine.pdf").write_bytes(pdf_bytes([["Indexed after the hang."]]))
    with Sandbox(Limits(timeout_s=1.5), extractor=hanging_extractor) as sandbox:
        summary = run(store, engine, root, sandbox=sandbox)
    assert dict(summary.skipped) == {"timed-out": 1}
    assert summary.indexed == 1 and stored_texts(store, "b-fine.pdf") == ["Indexed after the hang."]


def test_a_document_that_timed_out_twice_is_not_tried_again_until_it_changes(store, engine, tmp_path):
    """One hostile PDF must not add its timeout to every later run (issue 17, item 13)."""
    root = tmp_path / "hostile"
    root.mkdir()
    (root / "a-hang.pdf").write_bytes(b"hang")
    with Sandbox(Limits(timeout_s=1.5), extractor=hanging_extractor) as sandbox:
        first = run(store, engine, root, sandbox=sandbox)
        second = run(store, engine, root, sandbox=sandbox)
        starts = sandbox.starts
        third = run(store, engine, root, sandbox=sandbox)
        assert sandbox.starts == starts  # nothing was parsed
    assert dict(first.skipped) == dict(second.skipped) == {"timed-out": 1}
    assert dict(third.skipped) == {} and third.unchanged == 1
    (root / "a-hang.pdf").write_bytes(pdf_bytes([["Fixed since."]]))
    fourth = run(store, engine, root)
    assert fourth.indexed == 1 and stored_texts(store, "a-hang.pdf") == ["Fixed since."]


def test_a_document_that_turns_unreadable_loses_its_chunks(store, engine, library):
    run(store, engine, library)
    (library / "manual.pdf").write_bytes(scanned_pdf_bytes())
    summary = run(store, engine, library)
    assert dict(summary.skipped) == {"no-text": 1} and summary.unchanged == 6
    assert stored_texts(store, "manual.pdf") == []


def test_a_worker_crash_is_not_remembered_and_the_next_run_tries_again(store, engine, tmp_path):
    root = tmp_path / "crashy"
    root.mkdir()
    (root / "fine.pdf").write_bytes(pdf_bytes([["Indexed once the parser works."]]))
    with Sandbox(extractor=crashing_extractor) as sandbox:
        first = run(store, engine, root, sandbox=sandbox)
    assert dict(first.skipped) == {"crashed": 1} and first.indexed == 0
    second = run(store, engine, root)
    assert second.indexed == 1 and stored_texts(store, "fine.pdf") == ["Indexed once the parser works."]


def test_a_changed_document_whose_worker_crashes_keeps_its_old_chunks(store, engine, tmp_path):
    """A crash or timeout may pass (load, a hiccup): like an unreadable text file, the
    document keeps what it had until a run extracts the new version."""
    root = tmp_path / "changing"
    root.mkdir()
    (root / "fine.pdf").write_bytes(pdf_bytes([["The first version."]]))
    run(store, engine, root)
    (root / "fine.pdf").write_bytes(pdf_bytes([["The second version."]]))
    with Sandbox(extractor=crashing_extractor) as sandbox:
        crashed = run(store, engine, root, sandbox=sandbox)
    assert dict(crashed.skipped) == {"crashed": 1} and crashed.removed == 0
    assert stored_texts(store, "fine.pdf") == ["The first version."]
    again = run(store, engine, root)
    assert again.indexed == 1 and stored_texts(store, "fine.pdf") == ["The second version."]
