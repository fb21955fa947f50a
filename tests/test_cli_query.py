"""`edge-embed query` end to end: a real index, the tiny real model, exit codes like grep."""

from __future__ import annotations

import hashlib
import json
import re
import os
import pty
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from edge_embed.cli import cli
from edge_embed.modelfile import read_model_info
from edge_embed.runtime.loader import load_embedder
from edge_embed.runtime.plan import RuntimeSettings
from edge_embed.store import FileRecord, IndexSettings, NewChunk, Store

DOCS = Path(__file__).resolve().parent.parent / "docs" / "query-json.md"
FILES = {
    "keys.md": "# Rotating keys\nRotate the API keys every ninety days.\nUse the vault CLI to rotate them.",
    "pets.txt": "The cat sat on the mat.\nThe dog slept by the door.",
    "budget/q3.md": "Quarterly budget: travel, hardware and licences.\nKeys to the office cost extra.",
    "zh/notes.md": "私有的离线语义搜索\n中文文本",
}


def index_settings(model_path: Path, dims: int) -> IndexSettings:
    info = read_model_info(model_path)
    return IndexSettings(str(model_path), str(model_path), info.file_size, info.header_hash, dims, 256, 0)


def build_index(db: Path, root: Path, model_path: Path) -> None:
    """What `edge-embed index` would write: one chunk per file, vectors from the real model."""
    embedder = load_embedder(str(model_path), RuntimeSettings(force_cpu=True, ctx=256))
    vectors = embedder.embed_documents(list(FILES.values()))
    embedder.close()
    with Store.open(db) as store:
        store.meta.init_settings(index_settings(model_path, vectors.shape[1]))
        root_id = store.files.add_root(root)
        for (relpath, text), vector in zip(FILES.items(), vectors):
            path = root / relpath
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            digest = hashlib.sha256(text.encode()).hexdigest()
            chunk = NewChunk(0, 1, text.count("\n") + 1, None, text, digest, vector)
            store.files.write_file(FileRecord(root_id, relpath, str(path), len(text), 1, digest), [chunk])


@pytest.fixture(scope="module")
def indexed(tmp_path_factory: pytest.TempPathFactory, tiny_model) -> tuple[Path, Path]:
    """(index file, indexed folder) built once; tests only read it."""
    base = tmp_path_factory.mktemp("indexed")
    model = base / "model.gguf"
    shutil.copy(tiny_model.path, model)
    build_index(base / "index.db", base / "notes", model)
    return base / "index.db", base / "notes"


def run(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, ["query", *args], env={"EDGE_EMBED_CPU": "1", **(env or {})})


def assert_one_line_error(result: Result, *fragments: str) -> None:
    assert result.exit_code == 2, result.output
    message = result.stderr.strip()
    assert message.startswith("Error: ") and "\n" not in message, message
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in message, message


def documented_result_keys() -> set[str]:
    section = DOCS.read_text(encoding="utf-8").split("## Result object", 1)[1]
    return set(re.findall(r"^\| `(\w+)` \|", section, re.MULTILINE))


# ---------------------------------------------------------------------- results
def test_hybrid_query_prints_location_snippet_and_exit_0(indexed) -> None:
    db, root = indexed
    result = run("rotate", "the", "API", "keys", "--db", str(db))
    assert result.exit_code == 0, result.output
    assert f"{root}/keys.md:1-3" in result.stdout
    assert "Rotate the API keys every ninety days." in result.stdout
    assert "\x1b[" not in result.stdout, "no colour when stdout is not a terminal"


def test_color_always_highlights_the_query_terms(indexed) -> None:
    db, _ = indexed
    result = run("vault", "--mode", "keyword", "--color", "always", "--db", str(db))
    assert result.exit_code == 0
    assert "\x1b[" in result.stdout and "vault" in result.stdout


def run_on_a_terminal(args: list[str], no_color: str | None) -> bytes:
    """The real command with stdout on a pseudo-terminal, as a person would run it."""
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    if no_color is not None:
        env["NO_COLOR"] = no_color
    leader, follower = pty.openpty()
    try:
        subprocess.run([sys.executable, "-m", "edge_embed", "query", *args], stdout=follower, env=env,
                       check=True, timeout=60)
        return os.read(leader, 65536)
    finally:
        os.close(leader)
        os.close(follower)


def test_terminal_output_is_coloured_unless_no_color_is_set(indexed) -> None:
    db, _ = indexed
    args = ["vault", "--mode", "keyword", "--db", str(db)]
    assert b"\x1b[" in run_on_a_terminal(args, no_color=None)
    assert b"\x1b[" not in run_on_a_terminal(args, no_color="1")


def test_json_follows_the_documented_schema(indexed) -> None:
    db, root = indexed
    result = run("office keys", "--json", "-k", "3", "--db", str(db))
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert set(document) == {"schema_version", "query", "mode", "index_age_s", "results"}
    assert (document["query"], document["mode"]) == ("office keys", "hybrid")
    assert isinstance(document["index_age_s"], float) and document["index_age_s"] >= 0
    assert 1 <= len(document["results"]) <= 3
    for rank, record in enumerate(document["results"], 1):
        assert set(record) == documented_result_keys()
        assert record["rank"] == rank
        assert Path(record["path"]) == Path(record["root"]) / record["relpath"]
        assert record["root"] == str(root)
        assert Path(record["path"]).read_text(encoding="utf-8") == record["text"]
        assert isinstance(record["score"], float) and isinstance(record["chunk_id"], int)
        assert record["vector_rank"] is not None or record["keyword_rank"] is not None
        fusion = record["fusion"]
        vector_term = record["vector_score"] if record["vector_rank"] else fusion["vector_floor"]
        bm25 = record["keyword_score"] if record["keyword_rank"] else fusion["keyword_floor"]
        assert record["score"] == pytest.approx(vector_term + bm25 / fusion["keyword_ceiling"]), "as documented"


def test_jsonl_is_one_result_per_line_in_vector_mode(indexed) -> None:
    db, _ = indexed
    result = run("cats and dogs", "--jsonl", "--mode", "vector", "--db", str(db))
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(records) == len(FILES)
    assert all(set(r) == documented_result_keys() for r in records)
    assert all(r["keyword_rank"] is None and r["score"] == r["vector_score"] and r["fusion"] is None for r in records)
    assert [r["score"] for r in records] == sorted((r["score"] for r in records), reverse=True)


def test_files_lists_unique_paths_in_rank_order(indexed) -> None:
    db, root = indexed
    result = run("keys", "--mode", "keyword", "--files", "--db", str(db))
    assert result.exit_code == 0
    assert set(result.stdout.splitlines()) == {f"{root}/keys.md", f"{root}/budget/q3.md"}


def test_filters_and_cjk_keyword_search(indexed) -> None:
    db, root = indexed
    in_budget = run("keys", "--mode", "keyword", "--files", "--in", str(root / "budget"), "--db", str(db))
    assert in_budget.stdout.splitlines() == [f"{root}/budget/q3.md"]
    globbed = run("keys", "--mode", "keyword", "--files", "--glob", "keys.*", "--db", str(db))
    assert globbed.stdout.splitlines() == [f"{root}/keys.md"]
    cjk = run("语义搜索", "--mode", "keyword", "--files", "--db", str(db))
    assert cjk.stdout.splitlines() == [f"{root}/zh/notes.md"]


def test_explain_shows_both_lists_and_the_fused_score(indexed) -> None:
    db, _ = indexed
    result = run("vault", "--explain", "--db", str(db))
    assert result.exit_code == 0
    explained = [line for line in result.stdout.splitlines() if "explain:" in line]
    assert explained and re.search(r"keyword #1 \(bm25 ([\d.]+)\) -> \1/[\d.]+ = [\d.]+;", result.stdout)
    assert all("fused" in line and "(cosine + bm25 / " in line for line in explained), "the fusion used is named"
    keyword_only = run("vault", "--explain", "--mode", "keyword", "--db", str(db))
    assert "keyword #1 (bm25" in keyword_only.stdout and "fused" not in keyword_only.stdout


def test_no_results_exit_1(indexed) -> None:
    db, _ = indexed
    result = run("zebra", "--mode", "keyword", "--db", str(db))
    assert (result.exit_code, result.stdout, result.stderr.strip()) == (1, "", "no results")
    as_json = run("zebra", "--mode", "keyword", "--json", "--db", str(db))
    assert as_json.exit_code == 1 and json.loads(as_json.stdout)["results"] == []
    strict = run("keys", "--mode", "vector", "--min-score", "1.01", "--db", str(db))
    assert strict.exit_code == 1


def test_long_query_is_truncated_with_a_warning(indexed) -> None:
    db, _ = indexed
    result = run(" ".join(["rotate the keys"] * 40), "--mode", "vector", "--ctx", "32", "--db", str(db))
    assert result.exit_code == 0, result.output
    assert "warning: input of" in result.stderr and "longer than the context" in result.stderr


# ---------------------------------------------------------------------- errors
def test_empty_query_is_an_error(indexed) -> None:
    db, _ = indexed
    assert_one_line_error(run("--db", str(db)), "query is empty")
    assert_one_line_error(run("  ", "--mode", "keyword", "--db", str(db)), "query is empty")


def test_missing_index_names_the_index_command(tmp_path: Path) -> None:
    assert_one_line_error(run("keys", "--db", str(tmp_path / "none.db")), "edge-embed index")


def test_unknown_in_path(indexed, tmp_path: Path) -> None:
    db, _ = indexed
    """The library's param in_paths is the CLI's --in (cli/wording.py)."""
    missing = run("keys", "--in", str(tmp_path / "nowhere"), "--db", str(db))
    assert_one_line_error(missing, "unknown path", "it does not exist; --in takes files or folders")
    outside = run("keys", "--in", str(tmp_path), "--db", str(db))
    assert_one_line_error(outside, "not in an indexed folder; --in takes", "run `edge-embed status` to list them")
    assert "in_paths" not in missing.output + outside.output


def test_output_formats_are_exclusive_and_model_is_refused(indexed) -> None:
    db, _ = indexed
    assert_one_line_error(run("keys", "--json", "--files", "--db", str(db)), "--json")
    assert_one_line_error(run("keys", "--model", "other.gguf", "--db", str(db)), "drop --model")
    from_env = run("keys", "--db", str(db), env={"EDGE_EMBED_MODEL": "/elsewhere/other.gguf"})
    assert from_env.exit_code == 0, "EDGE_EMBED_MODEL (for index/embed) must not break queries"


def test_a_query_starting_with_a_dash_is_told_to_go_after_double_dash(indexed) -> None:
    db, root = indexed
    assert_one_line_error(run("-minus +plus", "--db", str(db)), "goes after '--'", "edge-embed query -- '-minus +plus'")
    unknown = run("-x", "foo", "--db", str(db))
    assert unknown.exit_code == 2 and "Traceback" not in unknown.output
    assert "No such option '-x'" in unknown.stderr and "edge-embed query -- -x" in unknown.stderr
    after_dashes = run("--mode", "keyword", "--db", str(db), "--", "-rotate", "+vault")
    assert after_dashes.exit_code == 0, after_dashes.output
    assert f"{root}/keys.md" in after_dashes.stdout


def test_options_still_parse_next_to_the_double_dash_rule(indexed) -> None:
    db, _ = indexed
    glued = run("-k1", "--mode=keyword", "keys", "--db", str(db), "--files")
    assert glued.exit_code == 0, glued.output
    assert len(glued.stdout.splitlines()) == 1
    assert_one_line_error(run("keys", "-m", "other.gguf", "--db", str(db)), "drop --model")
    for mistake in (["-k", "many"], ["--mdoe", "keyword"]):
        result = run("keys", *mistake, "--db", str(db))
        assert result.exit_code == 2 and "goes after" not in result.stderr, result.stderr


def test_query_help_shows_the_double_dash() -> None:
    result = CliRunner().invoke(cli, ["query", "--help"])
    assert "edge-embed query -- \"-minus +plus\"" in result.output


@pytest.fixture
def index_without_model(tmp_path: Path, tiny_model) -> Path:
    """An index whose model file was deleted after indexing."""
    model = tmp_path / "gone.gguf"
    shutil.copy(tiny_model.path, model)
    build_index(tmp_path / "index.db", tmp_path / "notes", model)
    model.unlink()
    return tmp_path / "index.db"


def test_missing_model_file_says_how_to_get_it_and_keyword_mode_still_works(index_without_model: Path) -> None:
    db = str(index_without_model)
    assert_one_line_error(run("keys", "--db", db), "gone.gguf", "put the file back", "--mode keyword")
    assert_one_line_error(run(" ", "--db", db), "query is empty")  # checked before the model loads
    assert_one_line_error(run("keys", "--in", "/nowhere", "--db", db), "unknown path /nowhere", "--in takes")
    keyword = run("keys", "--mode", "keyword", "--files", "--db", db)
    assert keyword.exit_code == 0 and keyword.stdout.splitlines()[0].endswith("/notes/keys.md")


def test_missing_catalog_model_names_the_pull_command(index_without_model: Path, tmp_path: Path) -> None:
    with Store.open(index_without_model) as store:
        settings = store.meta.settings()
        store.meta._save_settings(replace(settings, model_label="qwen3-embedding-0.6b"))  # noqa: SLF001
    result = run("keys", "--db", str(index_without_model), env={"HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"})
    assert_one_line_error(result, "edge-embed pull qwen3-embedding-0.6b", "--mode keyword")


def test_in_reaches_through_a_symlinked_subfolder_and_a_symlinked_root(tmp_path: Path, tiny_model) -> None:
    """Stored paths go through symlinked folders unresolved; --in must be spelled the same way.
    (A link is followed only to a folder inside the root: "link" and "real" are both indexed.)"""
    root = tmp_path / "notes"
    linked = root / "real" / "sub"
    linked.mkdir(parents=True)
    (linked / "far.md").write_text("A walrus in the linked folder.\n", encoding="utf-8")
    (root / "near.md").write_text("A walrus next to the root.\n", encoding="utf-8")
    (root / "link").symlink_to(root / "real", target_is_directory=True)
    (tmp_path / "alias").symlink_to(root, target_is_directory=True)
    db = tmp_path / "index.db"
    indexed = CliRunner().invoke(cli, ["index", str(root), "--db", str(db), "--model", str(tiny_model.path), "--quiet"])
    assert indexed.exit_code == 0, indexed.output
    far, real, near = f"{root}/link/sub/far.md", f"{root}/real/sub/far.md", f"{root}/near.md"
    for in_path, expected in (
        (root / "link" / "sub", {far}),
        (root / "link", {far}),
        (tmp_path / "alias" / "link" / "sub", {far}),  # the root itself given through a symlink
        (tmp_path / "alias", {far, real, near}),
        (tmp_path, {far, real, near}),  # a parent of the root
    ):
        result = run("walrus", "--mode", "keyword", "--files", "--in", str(in_path), "--db", str(db))
        assert result.exit_code == 0, (in_path, result.output)
        assert set(result.stdout.splitlines()) == expected, in_path
