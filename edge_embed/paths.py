"""The index file a command means, and the small JSON caches in the cache directory (``Config.cache_dir``)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from edge_embed.config import current


def read_cache_entry(file_name: str, key: str) -> Any:
    """``key`` of the JSON object in the cache file ``file_name``; None when missing or unreadable."""
    data = _read_cache_object(current().cache_dir / file_name)
    return data.get(key)


def write_cache_entry(file_name: str, key: str, value: Any) -> None:
    """Set ``key`` in the cache file's JSON object, replacing the file atomically. A cache
    that cannot be written costs only the work of finding the value out again."""
    path = current().cache_dir / file_name
    data = _read_cache_object(path)
    data[key] = value
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as tmp:
            json.dump(data, tmp)
        os.replace(tmp.name, path)
    except OSError:
        pass


def _read_cache_object(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def resolve_db(db: str | os.PathLike[str] | None) -> Path:
    """The index file: ``db``, else $EDGE_EMBED_DB, else index.db in the data directory."""
    return Path(db or current().default_db).expanduser().resolve()
