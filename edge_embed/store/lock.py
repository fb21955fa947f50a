"""The writer lock: one `edge-embed index` (or watch, compact, rebuild) per index file at a time.

An OS file lock on ``INDEX.lock`` beside the index, holding the writer's pid and command
so the second writer can say who holds it. The OS drops the lock when the holder dies, so a
killed writer never leaves a stale lock behind.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from edge_embed.errors import EdgeEmbedError

if os.name == "nt":  # pragma: no cover - exercised on Windows only
    import msvcrt

    _LOCK_OFFSET = 1 << 20  # lock a byte past the pid so readers can still read the pid

    def _try_lock(fd: int) -> bool:
        os.lseek(fd, _LOCK_OFFSET, os.SEEK_SET)
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True

    def _unlock(fd: int) -> None:
        os.lseek(fd, _LOCK_OFFSET, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)

else:
    import fcntl

    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)


DEFAULT_HOLDER = "edge-embed index"
# What to tell the second writer when a watcher holds the lock: it never finishes by itself
# (a hint: {stop_watch} is each face's word, errors.TERMS).
_WATCHER_ADVICE = "it keeps the index current; {stop_watch} first"


def _read_holder(fd: int) -> tuple[str, str]:
    """(pid, command) of the holder; a lock file of an older version holds the pid alone."""
    os.lseek(fd, 0, os.SEEK_SET)
    pid, _, holder = os.read(fd, 256).decode("utf-8", "replace").strip().partition(" ")
    return pid or "unknown", holder or DEFAULT_HOLDER


def _write_holder(fd: int, holder: str) -> None:
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, f"{os.getpid()} {holder}\n".encode("utf-8"))


def lock_path(index_path: Path) -> Path:
    """The file beside the index that writers lock."""
    return Path(f"{index_path}.lock")


@contextmanager
def writer_lock(index_path: Path, holder: str = DEFAULT_HOLDER) -> Iterator[None]:
    """Fail fast, saying who holds it, when another command is writing this index (OS file lock).

    ``holder`` is the command taking the lock, as the refused one will name it.
    """
    fd = os.open(lock_path(index_path), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if not _try_lock(fd):
            pid, other = _read_holder(fd)
            raise EdgeEmbedError(
                f"another `{other}` is writing to {index_path} (pid {pid})", kind="busy",
                hint=_WATCHER_ADVICE if other.endswith(" watch") else "wait for it to finish",
            )
        try:
            _write_holder(fd, holder)
            yield
        finally:
            os.ftruncate(fd, 0)
            _unlock(fd)
    finally:
        os.close(fd)
