"""An index in a folder (or on a disk) this user cannot write: readers read it, writers say why not.

Root ignores file permissions, so as root the folder is made immutable (``chattr +i``),
which binds root too; where neither works the tests skip and say so.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from click.testing import CliRunner

from edge_embed.api import Index
from edge_embed.cli import cli
from edge_embed.search import SearchOptions


@contextmanager
def read_only(*paths: Path) -> Iterator[None]:
    """Make ``paths`` unwritable for this process, and writable again afterwards."""
    if os.geteuid() != 0:
        modes = {path: path.stat().st_mode for path in paths}
        for path in paths:
            path.chmod(0o555 if path.is_dir() else 0o444)
        try:
            yield
        finally:
            for path, mode in modes.items():
                path.chmod(mode)
        return
    if shutil.which("chattr") is None:
        pytest.skip("running as root without chattr: no way to make a folder read-only for root")
    done = subprocess.run(["chattr", "+i", *map(str, paths)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"running as root and chattr +i is refused here ({done.stderr.strip()})")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", *map(str, paths)], check=True)


@pytest.fixture
def indexed(tmp_path: Path, tiny_model) -> tuple[Path, Path, Path]:
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "keys.md").write_text("# Keys\nRotate the API keys every ninety days.\n", encoding="utf-8")
    folder = tmp_path / "shelf"
    folder.mkdir()
    db = folder / "index.db"
    result = CliRunner().invoke(cli, ["index", str(notes), "--db", str(db), "--model", str(tiny_model.path), "--quiet"],
                                env={"EDGE_EMBED_CPU": "1"})
    assert result.exit_code == 0, result.output
    assert not (folder / "index.db-wal").exists()
    return db, folder, notes


def cli_run(*args: str):
    return CliRunner().invoke(cli, list(args), env={"EDGE_EMBED_CPU": "1"})


@pytest.mark.parametrize("file_too", [False, True], ids=["read-only folder", "read-only folder and file"])
def test_readers_read_an_index_they_cannot_write(indexed, file_too) -> None:
    db, folder, notes = indexed
    with read_only(folder, *([db] if file_too else [])):
        status = cli_run("status", "--db", str(db))
        assert status.exit_code == 0, status.output
        assert str(notes) in status.output
        for mode in ("keyword", "hybrid"):
            found = cli_run("query", "rotate keys", "--mode", mode, "--db", str(db), "--no-server", "--files")
            assert found.exit_code == 0, found.output
            assert found.stdout.strip() == str(notes / "keys.md")
        with Index.open(db) as index:  # what serve and mcp open
            assert index.search("rotate", SearchOptions(mode="keyword"))
        assert not [p.name for p in folder.iterdir() if p.name.endswith(("-wal", "-shm"))]


def test_writers_say_they_need_write_access(indexed) -> None:
    db, folder, notes = indexed
    with read_only(folder):
        removed = cli_run("remove", str(notes), "--db", str(db))
        assert removed.exit_code != 0
        assert "needs write access" in removed.stderr and "Traceback" not in removed.output
        again = cli_run("index", str(notes), "--db", str(db))
        assert again.exit_code != 0 and "Traceback" not in again.output
        assert "write" in again.stderr, again.stderr
