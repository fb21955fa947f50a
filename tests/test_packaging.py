"""pyproject.toml's dependency ranges and the minimum-versions CI job must not drift apart."""

from __future__ import annotations

import re
import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
LOWER_BOUND = re.compile(r">=\s*([0-9][0-9.]*)")
PIN = re.compile(r"^([A-Za-z0-9._-]+)==([0-9][0-9.]*)$")


def declared_requirements() -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [*project["dependencies"], *(r for extra in project["optional-dependencies"].values() for r in extra)]


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def release(version: str) -> tuple[int, ...]:
    """1.20 == 1.20.0: trailing zeros do not make another version."""
    parts = [int(part) for part in version.split(".")]
    while len(parts) > 1 and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


def minimum_pins() -> dict[str, str]:
    lines = (ROOT / ".ci" / "constraints-min.txt").read_text().splitlines()
    pins = [PIN.match(line.strip()) for line in lines if line.strip() and not line.startswith("#")]
    assert all(pins), "every line of constraints-min.txt is NAME==VERSION"
    return {canonical(pin.group(1)): pin.group(2) for pin in pins}


def test_every_dependency_has_a_lower_bound_that_ci_pins() -> None:
    pins = minimum_pins()
    declared = {}
    for requirement in declared_requirements():
        name = canonical(re.match(r"[A-Za-z0-9._-]+", requirement).group())
        bound = LOWER_BOUND.search(requirement.partition(";")[0])
        assert bound, f"{requirement} has no lower bound"
        declared[name] = bound.group(1)
    assert set(pins) == set(declared)
    for name, lower in declared.items():
        assert release(pins[name]) == release(lower), f"{name}: pyproject says >={lower}, CI pins {pins[name]}"


def test_ci_installs_the_minimum_versions_in_a_second_venv() -> None:
    lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert 'pip install ".[test]" -c .ci/constraints-min.txt && python -m pytest -q' in lines
