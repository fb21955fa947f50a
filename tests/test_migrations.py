"""An index an older edge-embed wrote (issue 16): readers answer from it as it is and say
what to run; only writers migrate it, under the writer lock, saying so step by step."""

from __future__ import annotations

import json
import time
from pathlib import Path

import apsw
import pytest
import sqlite_vec
from test_cli_index import invoke, notes, runner  # noqa: F401 - fixtures shared with the index CLI's tests

from edge_embed.errors import EdgeEmbedError
from edge_embed.store import SCHEMA_VERSION
from edge_embed.store import schema as schema_module
from edge_embed.store.lock import writer_lock

# What each migration added, undone (newest first): the file an edge-embed before it left.
UNDO = {
    6: """
        INSERT INTO chunks_fts(chunks_fts) VALUES('delete-all');
        INSERT INTO chunks_stemmed(chunks_stemmed) VALUES('delete-all');
        INSERT INTO chunks_fts(rowid, text, heading, path)
            SELECT c.id, c.text, coalesce(c.heading, ''), f.relpath FROM chunks c JOIN files f ON f.id = c.file_id;
        INSERT INTO chunks_stemmed(rowid, text, heading, path)
            SELECT c.id, c.text, coalesce(c.heading, ''), f.relpath FROM chunks c JOIN files f ON f.id = c.file_id
    """,
    5: "DROP TABLE chunks_stemmed",
    4: """
        CREATE TABLE old_vectors AS SELECT chunk_id, embedding FROM chunk_vectors;
        DROP TABLE chunk_vectors; DROP TABLE chunk_bits;
        CREATE VIRTUAL TABLE chunk_vectors USING vec0(chunk_id INTEGER PRIMARY KEY, embedding float[{dims}] distance_metric=l2);
        INSERT INTO chunk_vectors SELECT chunk_id, embedding FROM old_vectors; DROP TABLE old_vectors
    """,
    3: "ALTER TABLE chunks DROP COLUMN page_start; ALTER TABLE chunks DROP COLUMN page_end",
    2: """
        DROP TABLE chunks_cjk_bigrams; DROP TABLE chunks_cjk;
        CREATE VIRTUAL TABLE chunks_cjk USING fts5(text, content='', contentless_delete=1, tokenize='trigram')
    """,
}






def index_at_version(runner, notes: Path, model: Path, db: Path, version: int) -> Path:
    """``notes`` indexed by this edge-embed, then rewound to schema ``version``."""
    assert invoke(runner, "index", notes, "--db", db, "--model", model, "--quiet").exit_code == 0
    conn = apsw.Connection(str(db))
    conn.enable_load_extension(True)
    sqlite_vec.load(conn)
    dims = json.loads(conn.execute("SELECT value FROM meta WHERE key = 'settings'").fetchall()[0][0])["dims"]
    with conn:
        for number in range(SCHEMA_VERSION, version, -1):
            conn.execute(UNDO[number].format(dims=dims))
        conn.execute(f"PRAGMA user_version = {version}")
    conn.close()
    return db


def user_version(db: Path) -> int:
    conn = apsw.Connection(str(db))
    try:
        return conn.execute("PRAGMA user_version").fetchall()[0][0]
    finally:
        conn.close()


@pytest.mark.parametrize("version", [1, 2, 3, 4, 5])
def test_a_query_answers_from_an_old_index_without_migrating_it(runner, notes, tiny_model, tmp_path, version):
    db = index_at_version(runner, notes, tiny_model.path, tmp_path / "i.db", version)
    keyword = invoke(runner, "query", "rotate keys", "--mode", "keyword", "--files", "--db", db)
    assert keyword.exit_code == 0, keyword.output
    assert keyword.stdout.splitlines()[0].endswith("keys.md")
    assert "older edge-embed" in keyword.stderr and f"edge-embed index {notes.resolve()}" in keyword.stderr
    hybrid = invoke(runner, "query", "rotate keys", "--json", "--db", db)
    assert hybrid.exit_code == 0, hybrid.output
    assert {Path(r["path"]).name for r in json.loads(hybrid.stdout)["results"]} == {"keys.md", "garden.md"}
    assert user_version(db) == version, "a read never migrates"


def test_status_names_the_pending_upgrades_without_running_them(runner, notes, tiny_model, tmp_path):
    db = index_at_version(runner, notes, tiny_model.path, tmp_path / "i.db", 3)
    status = invoke(runner, "status", "--db", db)
    assert status.exit_code == 0, status.output
    assert "upgrade:  3 pending (coarse vectors, stemmed words, neighbour chunk words)" in status.output
    assert json.loads(invoke(runner, "status", "--db", db, "--json").output)["pending_migrations"] == [
        "coarse vectors", "stemmed words", "neighbour chunk words",
    ]
    assert user_version(db) == 3


def test_index_migrates_under_the_writer_lock_and_reports_each_step(runner, notes, tiny_model, tmp_path, monkeypatch):
    db = index_at_version(runner, notes, tiny_model.path, tmp_path / "i.db", 3)
    locked_during = []
    rebuild = schema_module.rebuild_vector_tables  # migration 4's work

    def observed(*args: object) -> None:
        try:
            with writer_lock(db, "a test"):
                locked_during.append(False)
        except EdgeEmbedError:
            locked_during.append(True)
        rebuild(*args)

    monkeypatch.setattr(schema_module, "rebuild_vector_tables", observed)
    result = invoke(runner, "index", notes, "--db", db)
    assert result.exit_code == 0, result.output
    assert "upgrading the index (1/3): coarse vectors" in result.stderr
    assert "upgrading the index (2/3): stemmed words" in result.stderr
    assert "upgrading the index (3/3): neighbour chunk words" in result.stderr
    assert locked_during == [True], "the migration runs while the writer lock is held"
    assert user_version(db) == SCHEMA_VERSION
    status = invoke(runner, "status", "--db", db)
    assert "upgrade:" not in status.output and json.loads(invoke(runner, "status", "--db", db, "--json").output)["pending_migrations"] == []


def test_a_query_during_a_write_does_not_wait_for_a_migration(runner, notes, tiny_model, tmp_path):
    """A writer holds the lock and an open write transaction: before, the query's own
    migration waited out the busy timeout and failed with IndexBusy."""
    db = index_at_version(runner, notes, tiny_model.path, tmp_path / "i.db", 3)
    writer = apsw.Connection(str(db))
    try:
        with writer_lock(db, "edge-embed index"):
            writer.execute("BEGIN IMMEDIATE")
            started = time.monotonic()
            result = invoke(runner, "query", "rotate keys", "--mode", "keyword", "--files", "--db", db)
            elapsed = time.monotonic() - started
            writer.execute("ROLLBACK")
    finally:
        writer.close()
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0].endswith("keys.md")
    assert elapsed < schema_module.BUSY_TIMEOUT_MS / 1000
    assert user_version(db) == 3


def test_a_rebuild_replaces_an_old_index_without_migrating_it_first(runner, notes, tiny_model, tmp_path, monkeypatch):
    """The old file is replaced whole by one of the current schema: migrating it first (a
    vector rewrite) would be wasted."""
    db = index_at_version(runner, notes, tiny_model.path, tmp_path / "i.db", 3)
    rewrites = []
    monkeypatch.setattr(schema_module, "rebuild_vector_tables", lambda *args: rewrites.append(args))
    result = invoke(runner, "index", "--rebuild", "--db", db)
    assert result.exit_code == 0, result.output
    assert "upgrading the index" not in result.stderr and rewrites == []
    assert user_version(db) == SCHEMA_VERSION
    assert invoke(runner, "query", "rotate keys", "--mode", "keyword", "--files", "--db", db).stdout.endswith("keys.md\n")
