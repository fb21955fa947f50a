"""Extraction in a worker process: bounded time and memory per document.

A parser fed a hostile or broken file may hang, crash or allocate without end (a
decompression bomb). None of that may stop or corrupt an indexing run, so documents
are parsed in one worker process that the indexer talks to over a pipe:

- **time**: the indexer waits ``Limits.timeout_s`` for the answer, then kills the worker
  and skips the file as "timed-out". The worker also caps its own CPU time per file
  (``RLIMIT_CPU``), so an orphaned worker cannot spin forever.
- **memory**: the worker caps its address space (``RLIMIT_AS``); an allocation over it
  fails, which skips the file as "too-large" (or, if the parser dies of it, "crashed").
- **reuse**: the worker stays alive across files, so a folder of 1,000 small PDFs pays
  one process start, not 1,000; after a timeout or crash the next file starts a fresh one.

The worker is started with "spawn" everywhere: a forked child would inherit the parent's
address space (a loaded model is gigabytes), which the memory cap would count. It ignores
Ctrl-C: the indexer decides what an interrupt means, and the worker finishes its file.
It dies with its parent, even one killed with SIGKILL mid-file: on Linux the kernel sends
it SIGKILL (``PR_SET_PDEATHSIG``); elsewhere a watchdog thread sees the parent pid change.

Platforms: the caps use POSIX ``resource``. On Windows there is no memory or CPU cap,
only the timeout; macOS accepts ``RLIMIT_AS`` but does not enforce it, so there too the
timeout is what bounds a runaway parser.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import threading
from collections.abc import Callable
from multiprocessing.connection import Connection

from edge_embed.documents import Document, Limits, Unextractable, extract

Extractor = Callable[[str, bytes, Limits], Document]
_CPU_SLACK_S = 5
STARTUP_TIMEOUT_S = 120.0
"""How long a new worker may take to import its parsers and say it is ready. Kept apart
from the per-file timeout, so a slow start on a busy machine is not blamed on a file."""


class Sandbox:
    """Extracts documents in a reused worker process; ``extractor`` is swappable for tests."""

    def __init__(self, limits: Limits = Limits(), extractor: Extractor = extract) -> None:
        self.limits = limits
        self._extractor = extractor
        self._process: multiprocessing.process.BaseProcess | None = None
        self._conn: Connection | None = None
        self.starts = 0  # how many worker processes were started (tests check the reuse)

    def extract(self, document_format: str, data: bytes) -> Document:
        """The document's text, or Unextractable with the reason to skip it."""
        conn = self._connection()
        try:
            conn.send((document_format, data))
        except OSError:  # the idle worker died (killed from outside): one fresh try
            self.close()
            conn = self._connection()
            conn.send((document_format, data))
        if not conn.poll(self.limits.timeout_s):
            self.close()
            raise Unextractable("timed-out", f"no result within {self.limits.timeout_s:g} s")
        try:
            ok, value = conn.recv()
        except (EOFError, OSError):
            code = self.close()
            raise Unextractable("crashed", f"the extraction worker died (exit code {code})") from None
        if ok:
            return value
        raise value

    def close(self) -> int | None:
        """Stop the worker (at once: it may be stuck); returns its exit code."""
        process, conn = self._process, self._conn
        self._process = self._conn = None
        if conn is not None:
            conn.close()
        if process is None:
            return None
        process.kill()
        process.join()
        return process.exitcode

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _connection(self) -> Connection:
        if self._conn is None:
            context = multiprocessing.get_context("spawn")
            parent, child = context.Pipe()
            process = context.Process(
                target=_serve, args=(child, self.limits, self._extractor, os.getpid()), daemon=True,
                name="edge-embed-extract",
            )
            process.start()
            child.close()
            self._process, self._conn = process, parent
            self.starts += 1
            self._wait_until_ready(parent)
        return self._conn

    def _wait_until_ready(self, conn: Connection) -> None:
        try:
            if conn.poll(STARTUP_TIMEOUT_S) and conn.recv() == "ready":
                return
        except (EOFError, OSError):
            pass
        code = self.close()
        raise Unextractable("crashed", f"the extraction worker did not start (exit code {code})")


def _serve(conn: Connection, limits: Limits, extractor: Extractor, parent_pid: int) -> None:
    """The worker's loop: one (format, bytes) request in, one (ok, Document or error) out."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent(parent_pid)
    _cap_memory(limits.memory_bytes)
    _import_parsers()
    conn.send("ready")
    while True:
        try:
            document_format, data = conn.recv()
        except (EOFError, OSError):  # the indexer is gone
            return
        _cap_cpu_time(limits.timeout_s)
        try:
            result: tuple[bool, object] = (True, extractor(document_format, data, limits))
        except Unextractable as exc:
            result = (False, exc)
        except MemoryError:
            result = (False, Unextractable("too-large", f"needs more than the {limits.memory_bytes >> 20} MiB memory limit"))
        except Exception as exc:  # a parser bug on a strange file: skip the file, keep the worker
            result = (False, Unextractable("damaged", f"the parser failed ({type(exc).__name__}: {exc})"))
        del data
        try:
            conn.send(result)
        except MemoryError:
            conn.send((False, Unextractable("too-large", "the extracted text is over the memory limit")))


PARENT_CHECK_S = 1.0
"""How often the watchdog looks for its parent, where the kernel cannot be asked to."""

_PR_SET_PDEATHSIG = 1


def _die_with_parent(parent_pid: int) -> None:
    """Never outlive the indexer: a worker left parsing a hostile file burns CPU for nothing."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent_pid:  # the parent died before the request above took effect
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True, name="parent-watchdog").start()


def _watch_parent(parent_pid: int) -> None:
    """The portable fallback (and a guard against a prctl that failed): poll the parent pid."""
    while True:
        threading.Event().wait(PARENT_CHECK_S)
        if os.getppid() != parent_pid:
            os._exit(1)


def _import_parsers() -> None:
    """Import the parsers before the first file, so their start-up is not charged to it."""
    import edge_embed.documents.pdf  # noqa: F401
    import edge_embed.documents.word  # noqa: F401


def _cap_memory(limit: int) -> None:
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    except (ImportError, ValueError, OSError):  # Windows has no resource module; see the module doc
        pass


def _cap_cpu_time(timeout_s: float) -> None:
    """Allow this file the timeout's worth of CPU on top of what the worker used so far."""
    try:
        import resource

        usage = resource.getrusage(resource.RUSAGE_SELF)
        _, hard = resource.getrlimit(resource.RLIMIT_CPU)
        soft = int(usage.ru_utime + usage.ru_stime + timeout_s) + _CPU_SLACK_S
        if hard != resource.RLIM_INFINITY:
            soft = min(soft, hard)
        resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))
    except (ImportError, ValueError, OSError):
        pass
