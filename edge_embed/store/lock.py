"""The writer lock: one `edge-embed index` (or compact, rebuild) per index file at a time.

An OS file lock on ``INDEX.lock`` beside the index, holding the writer's pid so the
second writer can say who holds it. The OS drops the lock when the holder dies, so a
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


def _read_pid(fd: int) -> str:
    os.lseek(fd, 0, os.SEEK_SET)
    return os.read(fd, 32).decode("ascii", "replace").strip() or "unknown"


def _write_pid(fd: int) -> None:
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, f"{os.getpid()}\n".encode("ascii"))


@contextmanager
def writer_lock(index_path: Path) -> Iterator[None]:
    """Fail fast when another `edge-embed index` is writing this index (OS file lock)."""
    fd = os.open(Path(f"{index_path}.lock"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if not _try_lock(fd):
            raise EdgeEmbedError(
                f"another `edge-embed index` is writing to {index_path} (pid {_read_pid(fd)}); wait for it to finish"
            )
        try:
            _write_pid(fd)
            yield
        finally:
            os.ftruncate(fd, 0)
            _unlock(fd)
    finally:
        os.close(fd)
