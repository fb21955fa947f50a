"""A missing or too old dependency is one error line naming the package to install."""

from __future__ import annotations

import sys
from importlib import metadata

import pytest
from click.testing import CliRunner

from edge_embed.cli import cli
from edge_embed.dependencies import dependency_error
from edge_embed.errors import DependencyError


def fail_import(monkeypatch: pytest.MonkeyPatch, module: str, *importers: str) -> None:
    """Make ``import module`` fail, as for a package installed without it (or in a version
    without it); ``importers`` are forgotten so that their next import runs again."""
    monkeypatch.setitem(sys.modules, module, None)
    for importer in importers:
        monkeypatch.delitem(sys.modules, importer, raising=False)


def assert_one_error_line(result, *fragments: str) -> None:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and isinstance(result.exception, SystemExit)
    [line] = [line for line in result.output.splitlines() if line.startswith("Error:")]
    for fragment in fragments:
        assert fragment in line, line


def test_a_huggingface_hub_without_what_download_imports_is_one_error_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """A hub pinned too low by another package: `pull` names the package, its version and the fix."""
    fail_import(monkeypatch, "huggingface_hub.utils", "edge_embed.download", "edge_embed.cli.models")
    result = CliRunner().invoke(cli, ["pull"])
    installed = metadata.version("huggingface-hub")
    assert_one_error_line(
        result, f"edge-embed cannot use the installed huggingface-hub {installed}", "run `pip install 'huggingface-hub"
    )


def test_llama_cpp_missing_at_first_use_is_one_error_line(monkeypatch: pytest.MonkeyPatch, tiny_model) -> None:
    fail_import(monkeypatch, "llama_cpp")
    result = CliRunner().invoke(cli, ["embed", "--model", str(tiny_model.path), "hello"])
    installed = metadata.version("llama-cpp-python")
    assert_one_error_line(result, f"installed llama-cpp-python {installed}", "run `pip install 'llama-cpp-python")


def test_a_package_that_is_not_installed_is_named_with_the_requirement() -> None:
    error = dependency_error(ModuleNotFoundError("No module named 'numpy'", name="numpy"))
    assert isinstance(error, DependencyError)
    assert error.package == "numpy" and error.installed == metadata.version("numpy")
    missing = dependency_error(ModuleNotFoundError("No module named 'nowhere_pkg'", name="nowhere_pkg.sub"))
    assert missing is not None and missing.installed is None
    assert str(missing) == (
        "edge-embed needs nowhere_pkg, which is not installed (No module named 'nowhere_pkg'):"
        " run `pip install 'nowhere_pkg'`"
    )


def test_an_import_error_inside_edge_embed_is_a_bug_and_keeps_its_traceback() -> None:
    assert dependency_error(ImportError("cannot import name 'x' from 'edge_embed.store'", name="edge_embed.store")) is None
