"""`edge-embed models` and `edge-embed pull` through click's CliRunner, against the fake hub."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from hubserver import FakeHub, fake_hub  # noqa: F401  (fake_hub is a fixture)

from edge_embed.catalog import CPU_DEFAULT_MODEL, DEFAULT_MODEL, get_entry, load_catalog
from edge_embed.cli import cli
from edge_embed.runtime import hardware
from edge_embed.testing import TinyModel

SMALL = get_entry(CPU_DEFAULT_MODEL)
DEFAULT = get_entry(DEFAULT_MODEL)
CPU_REASON = f"default model {SMALL.name}, not {DEFAULT.name}: no GPU that this llama.cpp build can drive"


@pytest.fixture
def hub(fake_hub: FakeHub, tiny_model: TinyModel, monkeypatch: pytest.MonkeyPatch) -> FakeHub:
    """The fake hub serving the tiny model as both the default and the 0.6B catalog files;
    no GPU (this machine has none; ``gpu_12gb`` simulates one)."""
    for entry in (DEFAULT, SMALL):
        fake_hub.add_file(entry.repo, entry.file, tiny_model.path.read_bytes())
    monkeypatch.delenv("EDGE_EMBED_FAKE_GPU", raising=False)
    return fake_hub


@pytest.fixture
def gpu_12gb(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGE_EMBED_FAKE_GPU", "NVIDIA GeForce RTX 3060:12288:11200")
    monkeypatch.setattr(hardware, "build_supports_offload", lambda: True)


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def models_json() -> dict:
    result = run("models", "--json")
    assert result.exit_code == 0
    return json.loads(result.stdout)


def test_models_lists_every_catalog_entry_with_how_to_get_it(hub: FakeHub) -> None:
    result = run("models")

    assert result.exit_code == 0
    for entry in load_catalog():
        assert entry.name in result.stdout and entry.description in result.stdout
        assert f"edge-embed pull {entry.name}" in result.stdout
    assert f"*  {SMALL.name} " in result.stdout and f"*  {DEFAULT.name} " not in result.stdout
    assert f"* here: {CPU_REASON}" in result.stdout
    assert "approximate" in result.stdout


def test_models_marks_the_4b_default_when_it_fits_the_gpu(hub: FakeHub, gpu_12gb: None) -> None:
    result = run("models")
    assert f"*  {DEFAULT.name} " in result.stdout and f"*  {SMALL.name} " not in result.stdout
    assert f"* here: default model {DEFAULT.name}: it fits whole on NVIDIA GeForce RTX 3060" in result.stdout


def test_models_and_pull_choose_as_index_does_when_edge_embed_cpu_is_set(
    hub: FakeHub, gpu_12gb: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """EDGE_EMBED_CPU=1 makes `index` plan for the CPU, so its default is the 0.6B; `models`
    and `pull` ignored the variable and named (and fetched) the 4B, which `index` then
    reported as not downloaded."""
    monkeypatch.setenv("EDGE_EMBED_CPU", "1")
    assert models_json()["default"] == SMALL.name
    pulled = run("pull")
    assert pulled.exit_code == 0 and pulled.stderr.startswith(f"default model {SMALL.name}, not {DEFAULT.name}")


def test_models_shows_where_a_pulled_model_is_and_marks_the_env_selection(
    hub: FakeHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = run("pull", SMALL.name).stdout.strip()
    monkeypatch.setenv("EDGE_EMBED_MODEL", SMALL.name)

    result = run("models")

    assert f"file: {path}" in result.stdout
    assert f"edge-embed pull {SMALL.name}" not in result.stdout
    assert f"*> {SMALL.name} " in result.stdout


def test_models_json_reports_catalog_and_download_state(hub: FakeHub, monkeypatch: pytest.MonkeyPatch) -> None:
    before = models_json()
    assert [m["name"] for m in before["models"]] == [e.name for e in load_catalog()]
    assert not any(m["downloaded"] for m in before["models"])
    assert [m["name"] for m in before["models"] if m["default"]] == [SMALL.name] == [before["default"]]
    assert before["default_reason"].startswith(CPU_REASON)

    path = run("pull", SMALL.name).stdout.strip()
    monkeypatch.setenv("EDGE_EMBED_MODEL", SMALL.name)
    after = {m["name"]: m for m in models_json()["models"]}

    assert after[SMALL.name]["downloaded"] and after[SMALL.name]["path"] == path
    assert after[SMALL.name]["selected_by_env"] and not after[DEFAULT_MODEL]["selected_by_env"]
    assert after[SMALL.name]["approx_size_bytes"] == SMALL.approx_size_bytes


def test_pull_without_name_downloads_the_default_for_a_gpu_and_prints_its_path(
    hub: FakeHub, tiny_model: TinyModel, gpu_12gb: None
) -> None:
    result = run("pull")

    assert result.exit_code == 0
    path = Path(result.stdout.strip())
    assert path.name == DEFAULT.file and path.read_bytes() == tiny_model.path.read_bytes()
    assert f"default model {DEFAULT.name}: it fits whole on NVIDIA GeForce RTX 3060" in result.stderr
    assert f"Downloading {DEFAULT_MODEL}" in result.stderr
    assert [r.path for r in hub.gets()] == [f"/{DEFAULT.repo}/resolve/main/{DEFAULT.file}"]


def test_pull_without_name_and_without_gpu_downloads_the_small_model_and_says_why(hub: FakeHub) -> None:
    result = run("pull")

    assert result.exit_code == 0
    assert Path(result.stdout.strip()).name == SMALL.file
    assert result.stderr.startswith(CPU_REASON)
    assert [r.path for r in hub.gets()] == [f"/{SMALL.repo}/resolve/main/{SMALL.file}"]


def test_pull_without_name_follows_edge_embed_model(hub: FakeHub, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGE_EMBED_MODEL", SMALL.name)

    result = run("pull")

    assert Path(result.stdout.strip()).name == SMALL.file


def test_pull_twice_says_already_downloaded_and_fetches_nothing(hub: FakeHub) -> None:
    first = run("pull", SMALL.name)
    hub.requests.clear()

    second = run("pull", SMALL.name)

    assert second.exit_code == 0 and second.stdout == first.stdout
    assert "already downloaded" in second.stderr
    assert hub.requests == []


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        (("pull", "qwen-typo"), {}, "Error: unknown model 'qwen-typo'; known models: "),
        (("pull", SMALL.name), {"HF_HUB_OFFLINE": "1"}, f"Error: {SMALL.name} is not downloaded and HF_HUB_OFFLINE"),
    ],
    ids=["unknown-name", "offline"],
)
def test_pull_failures_are_one_error_line_with_exit_2(
    hub: FakeHub, monkeypatch: pytest.MonkeyPatch, args, env, expected
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)

    result = CliRunner().invoke(cli, list(args))

    assert result.exit_code == 2
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(error_lines) == 1 and error_lines[0].startswith(expected)
    assert result.stderr.endswith(error_lines[0] + "\n") and "Traceback" not in result.output
    assert result.stdout == ""


@pytest.mark.parametrize("command", ["models", "pull"])
def test_help_has_examples(command: str) -> None:
    result = run(command, "--help")

    assert result.exit_code == 0
    assert "Examples:" in result.stdout and f"edge-embed {command}" in result.stdout
