"""The README's two set-up commands and .ci/run must not drift apart."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = "python3 -m venv .venv && . .venv/bin/activate && "


def readme_commands() -> list[str]:
    blocks = re.findall(r"```\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)
    return [line for block in blocks for line in block.splitlines() if line.startswith(VENV)]


def test_readme_has_the_install_and_the_test_command():
    commands = readme_commands()
    assert len(commands) == 2, commands
    install, test = commands
    assert "pip install ." in install and "edge-embed index" in install and "edge-embed query" in install
    assert 'pip install ".[test]"' in test and "pytest" in test


def test_ci_runs_exactly_the_readme_test_command():
    test_command = readme_commands()[1].removeprefix(VENV)
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert test_command in ci_lines


def test_ci_builds_llama_cpp_as_the_readme_does_with_no_build_flags():
    """A flag the README lacks (CFLAGS, CMAKE_ARGS, -mno-amx...) would make CI prove a build
    no user runs; AMX that faults is handled by edge-embed itself (runtime/amx.py)."""
    commands = [
        line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line.strip() and not line.lstrip().startswith("#")
    ]
    for flag in ("CFLAGS", "CXXFLAGS", "CMAKE_ARGS", "mno-amx", "PIP_CACHE_DIR"):
        assert not any(flag in line for line in commands), flag
