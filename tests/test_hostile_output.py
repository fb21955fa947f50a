"""File names and contents written by an attacker reach the terminal or a pipe escaped."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from edge_embed.cli import cli

OSC_TITLE = "\x1b]0;pwned\x07"
CLEAR = "\x1b[2J"
HOSTILE_NAME = "report\nvictim.txt"
HOSTILE_TEXT = f"quarterly budget {OSC_TITLE} figures {CLEAR} and \x9b31m more\n"


@pytest.fixture(scope="module")
def hostile(tmp_path_factory, tiny_model) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("hostile")
    notes = base / "notes"
    notes.mkdir()
    (notes / HOSTILE_NAME).write_text(HOSTILE_TEXT, encoding="utf-8")
    (notes / f"title{OSC_TITLE}.md").write_text(f"# budget {CLEAR}heading\nquarterly budget plan\n", encoding="utf-8")
    result = CliRunner().invoke(
        cli, ["index", str(notes), "--db", str(base / "index.db"), "--model", str(tiny_model.path)],
        env={"EDGE_EMBED_CPU": "1"},
    )
    assert result.exit_code == 0, result.output
    return base / "index.db", notes


def query(db: Path, *args: str, color: str = "never"):
    return CliRunner().invoke(
        cli, ["query", "quarterly budget", "--mode", "keyword", "--db", str(db), "--no-server", "--color", color, *args],
    )


@pytest.mark.parametrize("color", ["never", "always"])
def test_text_output_shows_escapes_instead_of_sending_them(hostile, color) -> None:
    db, _ = hostile
    result = query(db, "--full", color=color)
    assert result.exit_code == 0, result.output
    shown = result.stdout
    assert "\x07" not in shown and "\x9b" not in shown and "]0;pwned" in shown
    assert "\\x1b]0;pwned\\x07" in shown and "\\x1b[2J" in shown and "\\x9b31m" in shown
    assert "report\\x0avictim.txt" in shown
    if color == "never":
        assert "\x1b" not in shown
    else:  # only our own colours: every ESC starts an SGR sequence (ESC [ digits m)
        assert all(part[:1] == "[" and part.split("m", 1)[0][1:].replace(";", "").isdigit()
                   for part in shown.split("\x1b")[1:])


def test_files_escapes_names_and_null_gives_them_exact_for_xargs(hostile, tmp_path) -> None:
    db, notes = hostile
    listed = query(db, "--files")
    assert listed.exit_code == 0
    assert "report\\x0avictim.txt" in listed.stdout and "\x1b" not in listed.stdout
    raw = CliRunner().invoke(
        cli, ["query", "quarterly budget", "--mode", "keyword", "--db", str(db), "--no-server", "--files", "-0"],
    )
    paths = raw.stdout_bytes.split(b"\0")
    assert paths[-1] == b"" and len(paths) == 3
    assert {Path(p.decode()).name for p in paths[:-1]} == {HOSTILE_NAME, f"title{OSC_TITLE}.md"}
    # the README's pipe: xargs -0 acts on the real files, never on ./victim.txt
    (tmp_path / "victim.txt").write_text("mine", encoding="utf-8")
    if shutil.which("xargs"):
        done = subprocess.run(["xargs", "-0", "ls", "-d"], input=raw.stdout_bytes, cwd=tmp_path, capture_output=True)
        assert done.returncode == 0, done.stderr
        assert done.stdout.count(str(notes).encode()) == 2


def test_null_needs_files(hostile) -> None:
    db, _ = hostile
    result = query(db, "--json", "-0")
    assert result.exit_code == 2 and "-0/--null goes with --files" in result.stderr


def test_json_and_jsonl_escape_every_control_character(hostile) -> None:
    db, _ = hostile
    for flag in ("--json", "--jsonl"):
        out = query(db, flag).stdout
        assert "\x1b" not in out and "\x9b" not in out and "\x07" not in out
        assert "\\u001b]0;pwned\\u0007" in out and "\\u009b31m" in out
        first = json.loads(out.splitlines()[0] if flag == "--jsonl" else out)
        record = first if flag == "--jsonl" else first["results"][0]
        assert "\x1b" in record["text"] or "\x1b" in record["path"]  # the JSON still decodes to the real text
