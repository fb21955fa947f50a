"""Where edge-embed keeps its index by default: the platform's per-user data directory."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

APP_NAME = "edge-embed"


def data_dir() -> Path:
    """XDG_DATA_HOME on Linux, Application Support on macOS, LOCALAPPDATA on Windows."""
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = str(Path.home() / "Library" / "Application Support")
    else:
        base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / APP_NAME


def cache_dir() -> Path:
    """XDG_CACHE_HOME on Linux, Caches on macOS, LOCALAPPDATA on Windows; EDGE_EMBED_CACHE wins."""
    configured = os.environ.get("EDGE_EMBED_CACHE")
    if configured:
        return Path(configured).expanduser()
    if sys.platform == "win32":
        return data_dir() / "cache"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / APP_NAME
    return Path(os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")) / APP_NAME


def read_cache_entry(file_name: str, key: str) -> Any:
    """``key`` of the JSON object in the cache file ``file_name``; None when missing or unreadable."""
    data = _read_cache_object(cache_dir() / file_name)
    return data.get(key)


def write_cache_entry(file_name: str, key: str, value: Any) -> None:
    """Set ``key`` in the cache file's JSON object, replacing the file atomically. A cache
    that cannot be written costs only the work of finding the value out again."""
    path = cache_dir() / file_name
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


def default_db_path() -> Path:
    """``EDGE_EMBED_DB`` when set, else ``index.db`` in the data directory."""
    configured = os.environ.get("EDGE_EMBED_DB")
    return Path(configured).expanduser() if configured else data_dir() / "index.db"


def resolve_db(db: str | os.PathLike[str] | None) -> Path:
    """The index file: ``db``, else $EDGE_EMBED_DB, else index.db in the data directory."""
    return Path(db or default_db_path()).expanduser().resolve()


def runtime_dir() -> Path:
    """Where running servers leave their discovery files: XDG_RUNTIME_DIR (per user, cleared
    at logout) when there is one, else a ``run`` folder in the cache directory."""
    configured = os.environ.get("XDG_RUNTIME_DIR")
    if configured and sys.platform.startswith("linux"):
        return Path(configured) / APP_NAME
    return cache_dir() / "run"
