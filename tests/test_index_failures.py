"""SQLite failures (full disk, damaged file, locks, a rebuild under a reader) as one-line errors.

The disk is filled for real, as SQLite sees it: ``PRAGMA max_page_count`` caps the file at
its current size on the connection the command opens, so the next page it needs fails with
SQLITE_FULL exactly where a full disk would. A damaged file is a real index with pages of
its chunks table overwritten.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import apsw
import pytest
import sqlite_vec
from click.testing import CliRunner

import edge_embed.store.core as store_core
import edge_embed.store.schema as store_schema
from edge_embed.cli import cli
from edge_embed.errors import IndexBusy, IndexChanged
from edge_embed.store import Store
from edge_embed.store.maintenance import Maintenance

NOTES = {
    "keys.md": "# Security\n\nRotate the API keys every month with the vault CLI.\n",
    "garden.md": "# Garden\n\nTomatoes need sun and water.\n",
}


@pytest.fixture
def runner(monkeypatch, tmp_path):
    monkeypatch.setenv("EDGE_EMBED_DB", str(tmp_path / "default.db"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("EDGE_EMBED_MODEL", raising=False)
    return CliRunner()


def invoke(runner, *args):
    return runner.invoke(cli, [str(arg) for arg in args], catch_exceptions=False)


def assert_one_line_error(result, *fragments):
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture
def indexed(runner, tmp_path, tiny_model) -> tuple[Path, Path]:
    """(index file, folder): a real index of two notes."""
    notes = tmp_path / "notes"
    notes.mkdir()
    for name, text in NOTES.items():
        (notes / name).write_text(text)
    db = tmp_path / "index.db"
    result = invoke(runner, "index", notes, "--db", db, "--model", tiny_model.path, "--quiet")
    assert result.exit_code == 0, result.output
    return db, notes


def contents(db: Path) -> tuple:
    """What a user can see of an index: its folders and counts, a keyword hit, and its health."""
    with Store.open(db, create=False) as store:
        roots = [(root.path, root.files, root.chunks) for root in store.files.roots()]
        hits = store.files.chunks_by_id(chunk_id for chunk_id, _ in store.keywords.keyword_search("rotate vault", 5))
        return roots, sorted(hit.relpath for hit in hits.values()), store.maintenance.integrity_check()


def test_disk_full_during_index_is_one_line_and_the_index_is_as_it_was(runner, indexed, monkeypatch):
    db, notes = indexed
    before = contents(db)
    (notes / "new.md").write_text("# New note\n\n" + "fresh words to store " * 150)
    real_connect = store_core.connect

    def connect_to_a_full_disk(path, create):
        conn = real_connect(path, create)
        pages = conn.execute("PRAGMA page_count").fetchall()[0][0]
        conn.execute(f"PRAGMA max_page_count = {pages}")
        return conn

    monkeypatch.setattr(store_core, "connect", connect_to_a_full_disk)
    assert_one_line_error(invoke(runner, "index", notes, "--db", db, "--quiet"), "is full", "free some space", "rolled back")
    monkeypatch.setattr(store_core, "connect", real_connect)
    after = contents(db)
    assert after == before and after[2] == "ok"
    assert after[1] == ["keys.md"]
    again = invoke(runner, "index", notes, "--db", db, "--quiet")  # with room again, the run completes
    assert again.exit_code == 0 and "1 indexed" in again.output, again.output


def test_a_folder_whose_name_is_not_utf8_is_refused_by_name(runner, tmp_path, tiny_model):
    folder = Path(os.fsdecode(os.fsencode(tmp_path) + b"/caf\xe9"))  # Latin-1 bytes, as Linux keeps them
    folder.mkdir()
    (folder / "a.md").write_text("# Notes\n\nRotate the keys.\n")
    db = tmp_path / "index.db"
    result = invoke(runner, "index", folder, "--db", db, "--model", tiny_model.path)
    assert_one_line_error(result, "caf\ufffd' is not valid UTF-8", "rename it")
    assert_one_line_error(invoke(runner, "remove", folder, "--db", db), "caf\ufffd' is not valid UTF-8")


def test_names_inside_a_folder_that_are_not_utf8_are_skipped_with_a_note(runner, indexed):
    db, notes = indexed
    (notes / os.fsdecode(b"bad\xff.md")).write_text("# Bad name\n\nRotate nothing.\n")
    subfolder = notes / os.fsdecode(b"sub\xfe")
    subfolder.mkdir()
    (subfolder / "inside.md").write_text("# Inside\n\nHidden by its folder's name.\n")
    result = invoke(runner, "index", notes, "--db", db, "--json")
    assert result.exit_code == 0, result.output
    assert "skipped bad\\xff.md: undecodable-name" in result.stderr
    assert "skipped sub\\xfe: undecodable-name" in result.stderr
    summary = json.loads(result.stdout)
    assert summary["skipped"] == {"undecodable-name": 2} and summary["unchanged"] == 2
    assert contents(db)[2] == "ok"


def overwrite_pages_of(db: Path, table: str) -> None:
    """Damage a real index in the middle: the root page of ``table`` (not the file's first).

    The root page comes from sqlite_schema, not dbstat: SQLite builds without dbstat
    (apsw 3.45's among them) must run this test too.
    """
    conn = apsw.Connection(str(db))
    page_size = conn.execute("PRAGMA page_size").fetchall()[0][0]
    pages = [row[0] for row in conn.execute("SELECT rootpage FROM sqlite_schema WHERE name = ? AND rootpage > 1", (table,))]
    conn.close()
    assert pages
    with open(db, "r+b") as file:
        for page in pages:
            file.seek((page - 1) * page_size)
            file.write(b"\xa5" * page_size)


def test_a_damaged_index_is_one_line_that_says_what_to_do(runner, indexed):
    db, notes = indexed
    overwrite_pages_of(db, "chunks")
    damaged = ("is damaged", "restore it from a backup", "edge-embed index FOLDER")
    assert_one_line_error(invoke(runner, "query", "--mode", "keyword", "rotate", "--db", db), *damaged)
    assert_one_line_error(invoke(runner, "remove", notes, "--db", db), *damaged)


def test_a_damaged_schema_is_damaged_not_foreign(runner, indexed):
    db, _ = indexed
    with open(db, "r+b") as file:  # page 1 past the 100-byte header holds the schema
        file.seek(100)
        file.write(b"\xa5" * 3000)
    assert_one_line_error(invoke(runner, "status", "--db", db), "is damaged")


def test_a_query_racing_a_rebuild_is_told_to_run_again(indexed, tiny_model):
    db, _ = indexed
    with Store.open(db, create=False) as store:
        other = apsw.Connection(str(db))  # another process, between a rebuild's drop and create
        other.enable_load_extension(True)
        sqlite_vec.load(other)
        other.execute("DROP TABLE chunk_vectors")
        other.close()
        with pytest.raises(IndexChanged, match="rebuilt while this command read it") as raised:
            store.vectors.vector_search(tiny_model.embed(tiny_model.tokenize("keys")), 3)
        assert raised.value.path == str(store.path) and "no such table" in raised.value.sqlite_error


def test_a_writer_held_too_long_is_index_busy(indexed, monkeypatch):
    db, _ = indexed
    monkeypatch.setattr(store_schema, "BUSY_TIMEOUT_MS", 50)
    holder = apsw.Connection(str(db))
    holder.execute("BEGIN IMMEDIATE")
    try:
        with Store.open(db, create=False) as store, pytest.raises(IndexBusy, match="try again"):
            store.files.mark_indexed(1)
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_an_apsw_error_past_the_store_is_still_one_line(runner, indexed, monkeypatch):
    db, _ = indexed

    def failing_stats(self):
        raise apsw.IOError("disk I/O error")

    monkeypatch.setattr(Maintenance, "stats", failing_stats)  # the raw method: no translation
    assert_one_line_error(invoke(runner, "status", "--db", db), "reading or writing the index failed", "check the disk")
