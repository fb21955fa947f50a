"""Path filters of a query: ``--in`` paths spelled like stored paths, and the SQL of a filter."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path


def absolute(path: str | os.PathLike[str]) -> str:
    """Roots and prefixes are compared as resolved absolute paths, like the indexer stores them."""
    return str(Path(path).expanduser().resolve())


def as_stored(path: str | os.PathLike[str], roots: Sequence[str]) -> str:
    """``path`` spelled the way the index spells its files: the root resolved, the rest as walked.

    A root is stored resolved (``absolute``), and each file as root + the relpath the walk
    found, which goes through symlinked folders inside the root without resolving them. So
    the shortest leading part of ``path`` that resolves to (or into) a root is resolved and
    the rest kept as given: ``ROOT/link/sub`` stays under ROOT even when ``link`` points
    elsewhere, and a root reached through a symlink still matches. A path that reaches no
    root (e.g. a parent of one) is resolved whole.
    """
    given = Path(os.path.abspath(Path(path).expanduser()))
    for lead in [*reversed(given.parents), given]:
        real = lead.resolve()
        if any(under_prefix(str(real), root) for root in roots):
            return str(real / given.relative_to(lead))
    return str(given.resolve())


def chunk_filter(file_ids: list[int] | None, column: str) -> tuple[str, list[object]]:
    """An ``AND column IN (chunks of these files)`` clause and its parameter; '' for no filter."""
    if file_ids is None:
        return "", []
    return (
        f"AND {column} IN (SELECT id FROM chunks WHERE file_id IN (SELECT value FROM json_each(?)))",
        [json.dumps(file_ids)],
    )


def under_prefix(path: str, prefix: str) -> bool:
    """True for the prefix itself and anything inside it ('/a/b' does not cover '/a/bc')."""
    return path == prefix or path.startswith(prefix.rstrip("/" + os.sep) + os.sep)
