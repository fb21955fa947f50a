"""PDF and Word files through the CLI: `index` then `query`, with the tiny real model."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edge_embed.testing.documents import docx_bytes, pdf_bytes, scanned_pdf_bytes
from test_cli_index import invoke, runner  # noqa: F401  (runner is a fixture)
from test_crash_safety import chunks_written, final_state
from test_documents import WORD_BLOCKS

TOPICS = [
    "Unpack the crate and check the parts list.",
    "Mount the frame on a level floor.",
    "Connect the blue cable to the left socket.",
    "Fill the reservoir with distilled water.",
    "Switch on the pump and wait for the green light.",
    "Record the serial number on the warranty card.",
    "Calibrate the torque wrench before tightening the flange bolts.",
    "Clean the filter every second month.",
    "Call the service desk when the red light blinks.",
]


@pytest.fixture
def shelf(tmp_path) -> Path:
    root = tmp_path / "shelf"
    root.mkdir()
    (root / "manual.pdf").write_bytes(pdf_bytes([[f"# Step {n}", text] for n, text in enumerate(TOPICS, 1)]))
    (root / "report.docx").write_bytes(docx_bytes(WORD_BLOCKS))
    (root / "scan.pdf").write_bytes(scanned_pdf_bytes())
    (root / "notes.md").write_text("# Notes\n\nThe garden needs water in summer.\n")
    return root


def test_a_sentence_on_page_7_is_found_on_page_7(runner, shelf, tiny_model, tmp_path):
    db = tmp_path / "i.db"
    indexed = invoke(runner, "index", shelf, "--db", db, "--model", tiny_model.path)
    assert indexed.exit_code == 0, indexed.output
    assert "3 indexed" in indexed.output and "1 skipped (no-text 1)" in indexed.output
    assert "skipped scan.pdf: no-text (no text layer: scanned?)" in indexed.output

    query = ["query", "calibrate the torque wrench", "--db", db]
    shown = invoke(runner, *query)
    assert shown.exit_code == 0, shown.output
    first = shown.output.splitlines()[0]
    assert first.startswith(f"{shelf.resolve() / 'manual.pdf'} p.7  score"), shown.output
    assert "  Calibrate the torque wrench before tightening the flange bolts." in shown.output

    best = json.loads(invoke(runner, *query, "--json").output)["results"][0]
    assert (best["relpath"], best["page_start"], best["page_end"], best["heading"]) == ("manual.pdf", 7, 7, "Step 7")
    assert "Calibrate the torque wrench" in best["text"]
    assert invoke(runner, *query, "--files").output.splitlines()[0] == str(shelf.resolve() / "manual.pdf")


def test_word_tables_are_searchable_and_an_unchanged_reindex_embeds_nothing(runner, shelf, tiny_model, tmp_path):
    db = tmp_path / "i.db"
    assert invoke(runner, "index", shelf, "--db", db, "--model", tiny_model.path, "--quiet").exit_code == 0
    again = json.loads(invoke(runner, "index", shelf, "--db", db, "--json").output)
    assert (again["unchanged"], again["indexed"], again["texts_embedded"], again["skipped"]) == (4, 0, 0, {})
    best = json.loads(invoke(runner, "query", "North revenue region", "--db", db, "--json", "--mode", "keyword").output)
    record = best["results"][0]
    assert record["relpath"] == "report.docx" and "North | 120" in record["text"]
    assert (record["page_start"], record["heading"]) == (1, "Quarterly report > Figures")


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_ctrl_c_in_a_terminal_keeps_finished_pdfs_and_the_next_run_completes(tiny_model, tmp_path):
    """The terminal sends SIGINT to the whole process group, the extraction worker too:
    it must ignore it (no traceback, no lost file), and the run ends as for text files."""
    root = tmp_path / "pdfs"
    root.mkdir()
    for i in range(40):
        (root / f"doc-{i:02d}.pdf").write_bytes(pdf_bytes([[f"Document {i} page {p}: " + TOPICS[(i + p) % 9]] for p in range(3)]))
    command = [sys.executable, "-m", "edge_embed", "index", str(root), "--model", str(tiny_model.path),
               "--chunk-tokens", "96", "--overlap", "8"]
    reference = tmp_path / "reference.db"
    assert subprocess.run([*command, "--db", str(reference), "--quiet"], capture_output=True, timeout=300).returncode == 0
    db = tmp_path / "interrupted.db"
    process = subprocess.Popen([*command, "--db", str(db)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    deadline = time.monotonic() + 120
    while not chunks_written(db):
        assert process.poll() is None and time.monotonic() < deadline, "index ended before any chunk was written"
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGINT)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert "Interrupted" in out and "Traceback" not in err and "KeyboardInterrupt" not in err
    partial = final_state(db)[0]
    assert 0 < len(partial) and partial <= final_state(reference)[0]
    again = subprocess.run([*command, "--db", str(db), "--quiet"], capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "skipped" not in again.stderr, again.stderr
    assert final_state(db)[0] == final_state(reference)[0]
