"""`edge-embed index`, `status`, `remove`, `config` and `embed` through click's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edge_embed.cli import cli
from edge_embed.store import Store
from hubserver import fake_hub  # noqa: F401  (a fixture)


@pytest.fixture
def runner(monkeypatch, tmp_path):
    monkeypatch.setenv("EDGE_EMBED_DB", str(tmp_path / "default.db"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("EDGE_EMBED_MODEL", raising=False)
    return CliRunner()


@pytest.fixture
def notes(tmp_path) -> Path:
    root = tmp_path / "notes"
    root.mkdir()
    (root / "keys.md").write_text("# Security\n\n## API keys\n\nRotate the API keys every month with the vault CLI.\n")
    (root / "garden.md").write_text("# Garden\n\nTomatoes need sun and water.\n")
    return root


def invoke(runner, *args):
    return runner.invoke(cli, [str(arg) for arg in args], catch_exceptions=False)


def assert_clean_error(result, *fragments):
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    error_lines = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(error_lines) == 1, result.output
    for fragment in fragments:
        assert fragment in error_lines[0]


def test_index_then_status_then_reindex(runner, notes, tiny_model, tmp_path):
    db = tmp_path / "i.db"
    first = invoke(runner, "index", notes, "--db", db, "--model", tiny_model.path)
    assert first.exit_code == 0, first.output
    assert "2 indexed" in first.output
    second = invoke(runner, "index", notes, "--db", db, "--json")
    assert second.exit_code == 0, second.output
    summary = json.loads(second.output)
    assert summary["unchanged"] == 2 and summary["texts_embedded"] == 0
    status = invoke(runner, "status", "--db", db)
    assert status.exit_code == 0
    assert str(notes.resolve()) in status.output
    assert "2 files" in status.output
    assert tiny_model.path.name in status.output
    as_json = json.loads(invoke(runner, "status", "--db", db, "--json").output)
    assert as_json["files"] == 2 and as_json["roots"][0]["path"] == str(notes.resolve())
    assert as_json["bytes_per_chunk"] == round(as_json["db_bytes"] / as_json["chunks"])
    dims = as_json["settings"]["dims"]
    assert as_json["coarse_bytes_per_chunk"] == (dims + 63) // 64 * 8 + 8  # sign bits + chunk id
    assert f"per chunk: {as_json['bytes_per_chunk'] / 1e3:.1f} KB on disk" in status.output
    assert as_json["vector_path"] == "exact"  # a small index: sqlite-vec's scan of the floats
    assert f"a vector query reads all {dims * 4} bytes of its vector (exact scan)" in status.output


def test_status_names_the_two_stage_path_of_a_big_index(runner, notes, tiny_model, tmp_path, monkeypatch):
    from edge_embed.store.vectors import Vectors

    db = tmp_path / "i.db"
    assert invoke(runner, "index", notes, "--db", db, "--model", tiny_model.path, "--quiet").exit_code == 0
    monkeypatch.setattr(Vectors, "exact_scan_max_floats", 0)  # as if it held millions of chunks
    monkeypatch.setattr(Vectors, "two_stage_min_dims", 0)  # ... of a model with more dimensions
    as_json = json.loads(invoke(runner, "status", "--db", db, "--json").output)
    assert as_json["vector_path"] == "two-stage"
    status = invoke(runner, "status", "--db", db).output
    assert f"a vector query scans {as_json['coarse_bytes_per_chunk']} bytes of codes (two stages)" in status


def test_index_uses_env_db_by_default(runner, notes, tiny_model, tmp_path):
    assert invoke(runner, "index", notes, "--model", tiny_model.path, "--quiet").exit_code == 0
    assert (tmp_path / "default.db").exists()


def test_index_with_another_model_is_refused(runner, notes, tiny_model, tmp_path):
    from edge_embed.testing import write_tiny_qwen3

    db = tmp_path / "i.db"
    assert invoke(runner, "index", notes, "--db", db, "--model", tiny_model.path).exit_code == 0
    other = write_tiny_qwen3(tmp_path / "other.gguf", seed=3)
    result = invoke(runner, "index", notes, "--db", db, "--model", other.path)
    assert_clean_error(result, "--rebuild")
    rebuilt = invoke(runner, "index", notes, "--db", db, "--model", other.path, "--rebuild")
    assert rebuilt.exit_code == 0, rebuilt.output
    with Store.open(db) as store:
        assert store.meta.settings().model_file == str(other.path.resolve())


def test_index_dims_and_mismatch(runner, notes, tiny_model, tmp_path):
    db = tmp_path / "i.db"
    assert invoke(runner, "index", notes, "--db", db, "--model", tiny_model.path, "--dims", 32).exit_code == 0
    assert invoke(runner, "index", notes, "--db", db).exit_code == 0, "dims default to the index's own"
    assert_clean_error(invoke(runner, "index", notes, "--db", db, "--dims", 48), "dims")
    assert_clean_error(invoke(runner, "index", notes, "--db", tmp_path / "j.db", "--model", tiny_model.path, "--dims", 0), "--dims")


def test_index_missing_catalog_model_names_the_pull_command(runner, notes, tmp_path):
    result = invoke(runner, "index", notes, "--db", tmp_path / "i.db", "--model", "qwen3-embedding-0.6b")
    assert_clean_error(result, "edge-embed pull qwen3-embedding-0.6b")


def test_ctrl_c_at_the_download_question_aborts_at_once(monkeypatch):
    """The model is chosen inside the run (Index.index), under index's Ctrl-C handler, which
    only sets ``stop``: at the offer to download, Ctrl-C must still abort, not download and stop."""
    import os
    import signal
    import threading
    import time

    import click

    from edge_embed import download
    from edge_embed.cli import index as index_command
    from edge_embed.errors import ModelNotFound

    def answer_with_ctrl_c(*args, **kwargs) -> bool:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(5)  # the signal arrives before this ends
        return True

    pulled = []
    monkeypatch.setattr(index_command, "interactive", lambda: True)
    monkeypatch.setattr(click, "confirm", answer_with_ctrl_c)
    monkeypatch.setattr(download, "pull", lambda entry, progress: pulled.append(entry))
    stop = threading.Event()
    with pytest.raises(KeyboardInterrupt), index_command.stop_on_sigint(stop, quiet=True):
        index_command.offer_pull(ModelNotFound("not downloaded", model_name="qwen3-embedding-0.6b"))
    assert not stop.is_set() and pulled == []


def test_index_not_a_gguf(runner, notes, tmp_path):
    fake = tmp_path / "fake.gguf"
    fake.write_bytes(b"not a model at all")
    assert_clean_error(invoke(runner, "index", notes, "--db", tmp_path / "i.db", "--model", fake), "not a GGUF")


def test_index_missing_folder(runner, tmp_path, tiny_model):
    result = invoke(runner, "index", tmp_path / "nowhere", "--model", tiny_model.path)
    assert result.exit_code == 2 and "does not exist" in result.output


def test_remove_forgets_a_root(runner, notes, tiny_model, tmp_path):
    db = tmp_path / "i.db"
    invoke(runner, "index", notes, "--db", db, "--model", tiny_model.path)
    result = invoke(runner, "remove", notes, "--db", db)
    assert result.exit_code == 0, result.output
    with Store.open(db) as store:
        assert store.maintenance.stats()["chunks"] == 0 and store.files.roots() == []
    assert_clean_error(invoke(runner, "remove", notes, "--db", db), "not an indexed folder")


def test_status_without_index(runner, tmp_path):
    assert_clean_error(invoke(runner, "status", "--db", tmp_path / "none.db"), "edge-embed index")


def test_config_sets_the_query_task(runner, notes, tiny_model, tmp_path):
    db = tmp_path / "i.db"
    invoke(runner, "index", notes, "--db", db, "--model", tiny_model.path)
    result = invoke(runner, "config", "--db", db, "--instruct", "Find the note that answers the question")
    assert result.exit_code == 0 and "Find the note" in result.output
    with Store.open(db) as store:
        assert store.meta.settings().instruction == "Find the note that answers the question"
    invoke(runner, "config", "--db", db, "--reset-instruct")
    with Store.open(db) as store:
        assert store.meta.settings().instruction is None


def test_config_on_an_index_without_settings_is_a_clean_error(runner, tmp_path):
    db = tmp_path / "i.db"
    Store.open(db).close()  # what a run that stopped before its first file leaves
    assert_clean_error(invoke(runner, "config", "--db", db), "no model or settings yet", "edge-embed index FOLDER")
    assert_clean_error(invoke(runner, "config", "--db", db, "--instruct", "Find notes"), "edge-embed index FOLDER")


def test_embed_prints_reference_vector(runner, tiny_model):
    result = invoke(runner, "embed", "--model", tiny_model.path, "hello")
    assert result.exit_code == 0, result.output
    vectors = json.loads(result.output)
    expected = tiny_model.embed(tiny_model.tokenize("hello") + [tiny_model.eos_id])
    assert len(vectors) == 1
    assert float(np.dot(vectors[0], expected)) > 0.999


def test_embed_jsonl_stdin_and_dims(runner, tiny_model):
    result = runner.invoke(cli, ["embed", "--model", str(tiny_model.path), "--jsonl", "--dims", "32"], input="one\n\ntwo\n")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.output.splitlines()]
    assert [row["text"] for row in rows] == ["one", "two"]
    assert all(len(row["embedding"]) == 32 for row in rows)


def test_embed_query_uses_instruction(runner, tiny_model):
    result = invoke(runner, "embed", "--model", tiny_model.path, "--query", "--instruct", "Find code", "sort a list")
    vector = json.loads(result.output)[0]
    expected = tiny_model.embed(tiny_model.tokenize("Instruct: Find code\nQuery:sort a list") + [tiny_model.eos_id])
    assert float(np.dot(vector, expected)) > 0.999


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["embed", "--model", "{model}", ""], "empty"),
        (["embed", "--model", "{model}", "--dims", "0", "x"], "--dims must be between 32 and"),
        (["embed", "--model", "{model}", "--dims", "100000", "x"], "--dims must be between 32 and"),
        (["embed", "--model", "{missing}", "x"], "not found"),
        (["embed", "--model", "{fake}", "x"], "not a GGUF"),
        (["embed", "--model", "{truncated}", "x"], "truncated"),
    ],
)
def test_embed_bad_input_is_one_line_error(runner, tiny_model, tmp_path, args, fragment):
    fake = tmp_path / "fake.gguf"
    fake.write_text("hello")
    truncated = tmp_path / "truncated.gguf"
    truncated.write_bytes(tiny_model.path.read_bytes()[:-1000])
    paths = {"model": tiny_model.path, "missing": tmp_path / "missing.gguf", "fake": fake, "truncated": truncated}
    result = invoke(runner, *[arg.format(**paths) for arg in args])
    assert_clean_error(result, fragment)


@pytest.mark.parametrize("command", [["embed", "hello"], ["index", "{notes}", "--db", "{db}"]])
def test_a_chat_model_is_one_line_error(runner, notes, tiny_chat_model, tmp_path, command):
    db = tmp_path / "i.db"
    result = invoke(runner, *[arg.format(notes=notes, db=db) for arg in command], "--model", tiny_chat_model.path)
    assert_clean_error(result, "tiny-qwen3-chat.gguf", "not an embedding model", "pooling is NONE")
    assert not db.exists()


def test_catalog_model_end_to_end_with_offer_to_pull(runner, notes, tiny_model, tmp_path, fake_hub, monkeypatch):
    """A person at a terminal: index offers the download, then query finds the note."""
    from edge_embed.catalog import get_entry

    entry = get_entry("qwen3-embedding-0.6b")
    fake_hub.add_file(entry.repo, entry.file, tiny_model.path.read_bytes())
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr("edge_embed.cli.index.interactive", lambda: True)
    db = tmp_path / "i.db"
    declined = runner.invoke(cli, ["index", str(notes), "--db", str(db), "--model", entry.name], input="n\n")
    assert_clean_error(declined, f"edge-embed pull {entry.name}")
    accepted = runner.invoke(cli, ["index", str(notes), "--db", str(db), "--model", entry.name], input="y\n")
    assert accepted.exit_code == 0, accepted.output
    assert "Download it now?" in accepted.output and "2 indexed" in accepted.output
    found = invoke(runner, "query", "API keys vault", "--db", db, "--files")
    assert found.exit_code == 0, found.output
    assert found.output.splitlines()[0].endswith("keys.md")
    with Store.open(db) as store:
        assert store.meta.settings().model_label == entry.name


def test_embed_warns_when_an_input_is_cut(runner, tiny_model):
    result = runner.invoke(cli, ["embed", "--model", str(tiny_model.path), "--ctx", "64", "word " * 100])
    assert result.exit_code == 0, result.output
    assert "warning: input of 501 tokens is longer than the context (64)" in result.stderr
    vector = json.loads(result.stdout)[0]
    expected = tiny_model.embed(tiny_model.tokenize("word " * 100)[:63] + [tiny_model.eos_id])
    assert float(np.dot(vector, expected)) > 0.999


def test_failed_model_check_never_wipes_or_creates_an_index(runner, notes, tiny_model, tmp_path):
    db = tmp_path / "i.db"
    assert invoke(runner, "index", notes, "--db", db, "--model", tiny_model.path).exit_code == 0
    missing = invoke(runner, "index", notes, "--db", db, "--rebuild", "--model", tmp_path / "gone.gguf")
    assert_clean_error(missing, "not found")
    with Store.open(db) as store:
        assert store.maintenance.stats()["chunks"] > 0, "--rebuild with a bad model must not wipe the index"
    fresh = tmp_path / "fresh.db"
    assert_clean_error(invoke(runner, "index", notes, "--db", fresh, "--model", "qwen3-embedding-8b"), "edge-embed pull")
    assert not fresh.exists()


def test_rebuild_keeps_the_model_and_every_setting_not_given(runner, notes, tiny_model, tmp_path):
    db = tmp_path / "i.db"
    first = invoke(runner, "index", notes, "--db", db, "--model", tiny_model.path, "--chunk-tokens", "256",
                   "--overlap", "20", "--dims", "48", "--instruct", "Find the note")
    assert first.exit_code == 0, first.output
    rebuilt = invoke(runner, "index", notes, "--db", db, "--rebuild", "--dims", "32")
    assert rebuilt.exit_code == 0, rebuilt.output
    with Store.open(db) as store:
        settings = store.meta.settings()
    assert settings.model_file == str(tiny_model.path.resolve())
    assert (settings.dims, settings.chunk_tokens, settings.overlap, settings.instruction) == (32, 256, 20, "Find the note")
    again = invoke(runner, "index", notes, "--db", db, "--rebuild", "--chunk-tokens", "128")
    assert again.exit_code == 0, again.output
    with Store.open(db) as store:
        settings = store.meta.settings()
    assert (settings.dims, settings.chunk_tokens, settings.overlap, settings.instruction) == (32, 128, 20, "Find the note")


def test_rebuild_with_impossible_chunking_keeps_the_index(runner, notes, tiny_model, tmp_path):
    db = tmp_path / "i.db"
    assert invoke(runner, "index", notes, "--db", db, "--model", tiny_model.path).exit_code == 0
    result = invoke(runner, "index", notes, "--db", db, "--rebuild", "--ctx", "64", "--chunk-tokens", "128")
    assert_clean_error(result, "--chunk-tokens")
    with Store.open(db) as store:
        assert store.maintenance.stats()["chunks"] > 0
    fresh = tmp_path / "fresh.db"
    assert_clean_error(invoke(runner, "index", notes, "--db", fresh, "--model", tiny_model.path, "--ctx", "64", "--chunk-tokens", "128"), "--chunk-tokens")
    assert not fresh.exists()


def test_an_emptied_root_is_kept_and_reported(runner, notes, tiny_model, tmp_path):
    """An unmounted drive's empty mount point must not empty the index."""
    db = tmp_path / "i.db"
    invoke(runner, "index", notes, "--db", db, "--model", tiny_model.path)
    for path in notes.iterdir():
        path.unlink()
    as_json = invoke(runner, "index", notes, "--db", db, "--json")
    assert as_json.exit_code == 0, as_json.output
    summary = json.loads(as_json.stdout)
    assert summary["kept"] == [{"path": str(notes.resolve()), "reason": "empty", "files_kept": 2}]
    assert summary["removed"] == 0
    assert f"`edge-embed remove {notes.resolve()}` drops them" in as_json.stderr
    text = invoke(runner, "index", notes, "--db", db)
    assert f"kept:   2 files of {notes.resolve()}, which is empty" in text.stdout
    assert "2 files, " in invoke(runner, "status", "--db", db).output


def test_an_empty_index_file_from_a_killed_first_run_is_initialised(runner, notes, tiny_model, tmp_path):
    db = tmp_path / "i.db"
    db.write_bytes(b"")
    assert_clean_error(invoke(runner, "query", "keys", "--db", db, "--cpu"), "no indexed files yet")
    result = invoke(runner, "index", notes, "--db", db, "--model", tiny_model.path)
    assert result.exit_code == 0, result.output
    assert "2 indexed" in result.output


def test_a_moved_model_file_is_followed_by_the_index(runner, notes, tiny_model, tmp_path):
    first, second = tmp_path / "a" / "m.gguf", tmp_path / "b" / "m.gguf"
    first.parent.mkdir()
    second.parent.mkdir()
    first.write_bytes(tiny_model.path.read_bytes())
    db = tmp_path / "i.db"
    assert invoke(runner, "index", notes, "--db", db, "--model", first).exit_code == 0
    first.rename(second)
    moved = invoke(runner, "index", notes, "--db", db, "--model", second)
    assert moved.exit_code == 0, moved.output
    with Store.open(db) as store:
        settings = store.meta.settings()
    assert (settings.model_label, settings.model_file) == (str(second), str(second))
    assert settings.model_size == second.stat().st_size
    found = invoke(runner, "query", "API keys vault", "--db", db, "--files", "--cpu")
    assert found.exit_code == 0, found.output
    assert found.output.splitlines()[0].endswith("keys.md")


@pytest.fixture
def two_folders(runner, notes, tiny_model, tmp_path) -> tuple[Path, Path]:
    """(index file, second folder): an index of notes and another folder."""
    other = tmp_path / "other"
    other.mkdir()
    (other / "o.md").write_text("Oranges.\n")
    db = tmp_path / "i.db"
    assert invoke(runner, "index", notes, other, "--db", db, "--model", tiny_model.path).exit_code == 0
    return db, other


def test_rebuild_with_a_model_llama_cpp_cannot_load_keeps_the_whole_index(runner, notes, tiny_model, tmp_path, two_folders):
    from edge_embed.testing import write_tiny_qwen3

    db, _other = two_folders
    before = invoke(runner, "status", "--db", db).output
    broken = write_tiny_qwen3(tmp_path / "broken.gguf", omit=("blk.1.ffn_down.weight",))
    result = invoke(runner, "index", notes, "--rebuild", "--db", db, "--model", broken.path)
    assert_clean_error(result, "llama.cpp could not load")
    assert invoke(runner, "status", "--db", db).output == before
    assert "3 files" in before and tiny_model.path.name in before
    assert sorted(path.name for path in tmp_path.iterdir() if path.name.startswith("i.db")) == ["i.db", "i.db.lock"]


def test_rebuild_redoes_every_folder_of_the_index_and_removes_stale_partial_files(runner, notes, tiny_model, tmp_path, two_folders):
    db, other = two_folders
    stale = [tmp_path / "i.db.rebuild-999999", tmp_path / "i.db.rebuild-999999-wal"]
    for path in stale:
        path.write_bytes(b"left by a killed rebuild")
    rebuilt = invoke(runner, "index", "--rebuild", "--db", db, "--dims", "32")
    assert rebuilt.exit_code == 0, rebuilt.output
    with Store.open(db) as store:
        assert store.files.root_paths() == sorted([str(notes.resolve()), str(other.resolve())])
        assert store.maintenance.stats()["files"] == 3 and store.meta.settings().dims == 32
        assert store.maintenance.integrity_check() == "ok"
    assert not any(path.exists() for path in stale)
    stale[0].write_bytes(b"left by a killed rebuild")
    assert invoke(runner, "index", notes, "--db", db).exit_code == 0
    assert not stale[0].exists(), "a plain run removes it too"
    assert_clean_error(invoke(runner, "index", "--db", db), "name the folders")
    assert_clean_error(invoke(runner, "index", "--rebuild", "--db", tmp_path / "new.db", "--model", tiny_model.path), "name the folders")
    assert not (tmp_path / "new.db").exists()


@pytest.fixture(scope="module")
def tiny_bert_path(tmp_path_factory) -> Path:
    from edge_embed.testing import write_tiny_bert

    return write_tiny_bert(tmp_path_factory.mktemp("bert") / "tiny-bert.gguf").path


def stored_chunking(db: Path) -> tuple[int, int]:
    with Store.open(db) as store:
        settings = store.meta.settings()
    return settings.chunk_tokens, settings.overlap


def test_a_new_index_gets_its_model_familys_chunking(runner, notes, tiny_model, tiny_bert_path, tmp_path):
    bert_db, qwen_db = tmp_path / "bert.db", tmp_path / "qwen.db"
    assert invoke(runner, "index", notes, "--db", bert_db, "--model", tiny_bert_path).exit_code == 0
    assert invoke(runner, "index", notes, "--db", qwen_db, "--model", tiny_model.path).exit_code == 0
    assert stored_chunking(bert_db) == (256, 25)  # BERT family: the catalog's measured default
    assert stored_chunking(qwen_db) == (512, 51)  # Qwen3 keeps the general default
    help_text = invoke(runner, "index", "--help").output
    assert "256 for BERT-family models, else 512" in " ".join(help_text.split())


def test_an_index_keeps_its_own_chunking_whatever_its_models_family(runner, notes, tiny_model, tiny_bert_path, tmp_path):
    db = tmp_path / "i.db"
    built = invoke(runner, "index", notes, "--db", db, "--model", tiny_bert_path, "--chunk-tokens", "512", "--overlap", "51")
    assert built.exit_code == 0, built.output
    assert invoke(runner, "index", notes, "--db", db).exit_code == 0
    assert stored_chunking(db) == (512, 51), "a re-run must not switch an index to the family default"
    rebuilt = invoke(runner, "index", notes, "--db", db, "--rebuild")
    assert rebuilt.exit_code == 0, rebuilt.output
    assert stored_chunking(db) == (512, 51), "--rebuild without --chunk-tokens keeps the index's chunking"
    other_model = invoke(runner, "index", notes, "--db", db, "--rebuild", "--model", tiny_model.path)
    assert other_model.exit_code == 0, other_model.output
    assert stored_chunking(db) == (512, 51), "a new model family does not change the index's chunking either"
