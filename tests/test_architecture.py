"""docs/architecture.md's import table is the layering contract; this checks the code keeps it.

The table says, per module, what it may import, so that data flows one way (files -> text
-> chunks -> embeddings -> store -> search -> render, the faces on top). A table nobody
checks drifts (issue 16 found search and rerank importing each other), so every import in
``edge_embed/`` (top level, inside functions, under ``TYPE_CHECKING``: a lazy import is
still a dependency) is read with ``ast`` and held against the table as written.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "edge_embed"
TABLE = REPO / "docs" / "architecture.md"
EXTERNAL = {"gguf", "numpy"}  # third-party names the table mentions (testing/); not checked here
NONE = {"nothing", "-"}
FACES = ("edge_embed.cli", "edge_embed.server")
BEHIND_FACADE = ("edge_embed.store", "edge_embed.indexer")

@dataclass(frozen=True)
class Row:
    """One line of the table: the modules it covers and the names it may import, as written."""

    modules: tuple[str, ...]  # dotted: "edge_embed.search", or a package "edge_embed.store"
    packages: tuple[str, ...]  # the modules written as a folder ("store/"): their insides are free
    allowed: str  # the "may import" cell


def dotted(path: str) -> str:
    """``runtime/engine.py`` / ``store/`` / ``__init__.py`` as a module name."""
    name = path.removesuffix("/").removesuffix(".py").replace("/", ".")
    name = name.removesuffix("__init__").rstrip(".")
    return f"edge_embed.{name}" if name else "edge_embed"


def read_table() -> list[Row]:
    """The rows of the first table under "# Architecture", in order ("all of the above" needs it)."""
    rows = []
    for line in TABLE.read_text(encoding="utf-8").splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) != 3 or cells[0] in ("module", "---"):
            continue
        paths = [p for p in re.findall(r"`([^`]+)`", cells[0]) if p.endswith((".py", "/"))]
        if paths:
            packages = tuple(dotted(p) for p in paths if p.endswith("/"))
            rows.append(Row(tuple(dotted(p) for p in paths), packages, cells[2]))
    return rows


def library_modules() -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its ``__init__``)."""
    modules = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(REPO).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


MODULES = library_modules()


def imports_of(module: str, path: Path) -> set[str]:
    """The edge_embed modules ``module`` imports anywhere in its file, resolved to module names:
    ``from edge_embed.store import Store`` is ``edge_embed.store``, ``from edge_embed import api``
    is ``edge_embed.api``; relative imports are resolved against the module's package."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            submodules = {f"{base}.{alias.name}" for alias in node.names} & MODULES.keys()
            named_attributes = any(f"{base}.{alias.name}" not in MODULES for alias in node.names)
            found |= submodules | ({base} if named_attributes else set())
    return {name for name in found if name == "edge_embed" or name.startswith("edge_embed.")}


def owner(module: str, rows: list[Row]) -> int | None:
    """The index of the row that covers ``module``: its own, else its nearest package's."""
    best: tuple[int, int] | None = None  # (length of the matched name, row index)
    for index, row in enumerate(rows):
        for name in row.modules:
            exact = module == name
            inside = name in row.packages and module.startswith(name + ".")
            if (exact or inside) and (best is None or len(name) > best[0]):
                best = (len(name), index)
    return None if best is None else best[1]


def resolve_name(name: str, rows: list[Row]) -> set[int]:
    """Rows a table name means: ``runtime/reranker``, ``store`` or a unique last part (``engine``)."""
    full = dotted(name)
    exact = {i for i, row in enumerate(rows) if full in row.modules}
    if exact:
        return exact
    return {i for i, row in enumerate(rows) for module in row.modules if module.rpartition(".")[2] == name}


def allowed_rows(index: int, rows: list[Row]) -> set[int] | None:
    """The rows row ``index`` may import (None: everything). Parenthesised notes and backticked
    names inside them are comments; every other name must mean exactly one row."""
    cell = re.sub(r"\([^)]*\)", "", rows[index].allowed).strip()
    if cell == "everything":
        return None
    if cell in NONE:
        return set()
    allowed = set()
    for name in (part.strip().strip("`") for part in cell.split(",")):
        if name == "all of the above":
            allowed |= set(range(index))
        elif name not in EXTERNAL:
            meant = resolve_name(name, rows)
            where = rows[index].modules[0]
            assert len(meant) == 1, f"architecture.md: {name!r} in the row of {where} means {len(meant)} rows"
            allowed |= meant
    return allowed


def violations(module: str, rows: list[Row]) -> list[str]:
    """The imports of ``module`` its row does not allow (its own package and ``edge_embed``
    itself, for ``__version__``, are always allowed)."""
    own = owner(module, rows)
    allowed = allowed_rows(own, rows)
    wrong = []
    for target in sorted(imports_of(module, MODULES[module])):
        theirs = owner(target, rows)
        if target == "edge_embed" or theirs == own or allowed is None or theirs in allowed:
            continue
        wrong.append(f"{module} imports {target}, which the row of {rows[own].modules[0]} does not allow")
    return wrong


ROWS = read_table()


def test_the_table_is_found_and_names_real_modules():
    assert len(ROWS) > 30
    listed = {module for row in ROWS for module in row.modules}
    assert listed - MODULES.keys() == set(), "architecture.md lists modules that do not exist"
    for index in range(len(ROWS)):
        allowed_rows(index, ROWS)  # every name resolves to one row


@pytest.mark.parametrize("module", sorted(MODULES))
def test_every_module_has_a_row(module):
    assert owner(module, ROWS) is not None, f"{module} has no row in docs/architecture.md's table"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_follow_the_table(module):
    assert violations(module, ROWS) == []


def test_search_and_rerank_import_one_way():
    """Issue 16: the result types live in results.py, so neither needs the other to name a Hit."""
    assert "edge_embed.rerank" not in imports_of("edge_embed.search", MODULES["edge_embed.search"])
    assert "edge_embed.search" not in imports_of("edge_embed.rerank", MODULES["edge_embed.rerank"])


def test_the_library_never_imports_a_face():
    """The faces sit on top: nothing below them may import cli/ or server/."""
    library = [m for m in MODULES if not m.startswith(FACES) and m not in ("edge_embed", "edge_embed.__main__")]
    wrong = {m: sorted(t for t in imports_of(m, MODULES[m]) if t.startswith(FACES)) for m in library}
    assert {m: t for m, t in wrong.items() if t} == {}


def facade_reach(module: str) -> set[str]:
    """Which of store/indexer ``module`` imports, submodules counted as their package."""
    return {b for b in BEHIND_FACADE for t in imports_of(module, MODULES[module]) if t == b or t.startswith(b + ".")}


def test_faces_never_reach_store_or_indexer():
    """Faces call api.py (issue 16: status, remove, config, compact, eval and MCP reached around it)."""
    faces = [m for m in MODULES if m.startswith(FACES)]
    reach = {m: facade_reach(m) for m in faces}
    assert {m: r for m, r in reach.items() if r} == {}


def test_imports_are_read_at_every_level(tmp_path):
    """A lazy import in a function and one under TYPE_CHECKING count like a top-level one."""
    source = tmp_path / "probe.py"
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from edge_embed.store import Store\n"
        "def f():\n    from edge_embed import api, __version__\n    import edge_embed.runtime.engine\n",
        encoding="utf-8",
    )
    assert imports_of("edge_embed.probe", source) == {
        "edge_embed.store", "edge_embed.api", "edge_embed", "edge_embed.runtime.engine",
    }
