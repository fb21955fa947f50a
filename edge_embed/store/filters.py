"""Path filters of a query (``--in`` folders, ``--glob`` patterns) and how paths compare."""

from __future__ import annotations

import fnmatch
import json
import os
from pathlib import Path


def absolute(path: str | os.PathLike[str]) -> str:
    """Roots and prefixes are compared as resolved absolute paths, like the indexer stores them."""
    return str(Path(path).expanduser().resolve())


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


def matches_glob(relpath: str, glob: str) -> bool:
    """A glob with a '/' matches the relpath; one without also matches the file name."""
    if fnmatch.fnmatch(relpath, glob):
        return True
    return "/" not in glob and fnmatch.fnmatch(relpath.rsplit("/", 1)[-1], glob)
