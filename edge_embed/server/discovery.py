"""How the CLI finds a running server: one small JSON file per served index.

`serve` writes ``{host, port, pid, db, model}`` into the per-user runtime directory,
named after a hash of the index file's path, and removes it when it stops. A file left
behind by a killed server is recognised (its pid is gone) and ignored. Only the standard
library is used: this runs on every `query` before anything heavy is imported.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from edge_embed.config import current


@dataclass(frozen=True)
class ServerInfo:
    host: str
    port: int
    pid: int
    db: str | None  # the index file it searches (absolute), None for embeddings only
    model: str  # the model's catalog name or file path (its label)

    @property
    def base_url(self) -> str:
        host = self.host
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1"
        return f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"


def discovery_file(db: str | None, model: str) -> Path:
    """The file for a server of this index (or, without an index, of this model)."""
    key = f"db:{db}" if db else f"model:{model}"
    return current().server_dir / f"server-{hashlib.sha256(key.encode()).hexdigest()[:16]}.json"


def publish(info: ServerInfo) -> Path:
    """Write the discovery file (0600, atomically); returns its path for ``withdraw``."""
    path = discovery_file(info.db, info.model)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temporary = path.with_suffix(f".{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump(asdict(info), out)
    os.replace(temporary, path)
    return path


def withdraw(path: Path, pid: int) -> None:
    """Remove our discovery file (not one a newer server has written since)."""
    info = _read(path)
    if info is not None and info.pid == pid:
        path.unlink(missing_ok=True)


def find_server(db: str | None = None, model: str | None = None) -> ServerInfo | None:
    """A live server of this index, or (``db`` None) one serving ``model`` or any model."""
    if db is not None:
        candidates = [discovery_file(db, "")]
    else:
        folder = current().server_dir
        candidates = sorted(folder.glob("server-*.json")) if folder.is_dir() else []
    for path in candidates:
        info = _read(path)
        if info is None or not pid_alive(info.pid):
            continue
        if db is not None or model is None or model in (info.model, Path(info.model).name):
            return info
    return None


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists (on Windows os.kill would end it: trust the connect)."""
    if sys.platform == "win32":
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    except OSError:
        return False
    return True


def _read(path: Path) -> ServerInfo | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return ServerInfo(str(data["host"]), int(data["port"]), int(data["pid"]), data.get("db"), str(data["model"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None
