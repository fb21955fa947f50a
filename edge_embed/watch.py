"""Keeping an index current while its folders change: `edge-embed watch` and `serve --watch`.

File-system events (watchfiles: Rust notify over inotify, FSEvents, ReadDirectoryChangesW)
say *which paths* changed; the incremental indexer decides *what* changed, under its own
rules, by walking just those paths (``Indexer.update``). Events are a hint, never the
truth: they can be lost (a kernel queue overflow, which watchfiles 1.x drops silently), a
watch can vanish with its folder (a drive unplugged, a folder moved away) and network or
FUSE file systems do not send them at all. So a cheap full stat walk (``Indexer.run``, the
unchanged-files path) reconciles the index with the disk: at start, after a burst too large
to trust, after a watch was dropped, and every ``reconcile_s``. Folders without events are
reconciled every ``poll_s`` instead (polling, said once).

Threads: one feed thread per watched folder turns events into pending relpaths; ONE
thread (the caller of ``Watcher.run``) owns the store and applies them, so a burst that
arrives while a batch is being indexed is coalesced into the next batch.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from edge_embed.errors import EdgeEmbedError
from edge_embed.files import GENERATED_DIR_NAMES, IGNORE_FILE_NAMES, VCS_NAMES

if TYPE_CHECKING:
    from edge_embed.indexer import IndexSummary

log = logging.getLogger("edge_embed")

# File systems whose changes made elsewhere (another machine, a FUSE daemon) send no events.
NO_EVENT_FILE_SYSTEMS = frozenset({
    "nfs", "nfs4", "cifs", "smb3", "smbfs", "9p", "afs", "ceph", "glusterfs", "lustre", "davfs", "fuse", "fuseblk",
})


STOP_CHECK_S = 0.5  # how soon the loop notices ``stop`` while idle
MISSING_CHECK_S = 2.0  # how often a missing folder is looked for (an unplugged drive coming back)
WATCH_TICK_MS = 1000  # how often a watch looks whether its folder is still the one watched


@dataclass(frozen=True)
class WatchSettings:
    """How changes are grouped and how often the disk is re-checked as a whole."""

    debounce_ms: int = 1000  # the longest a burst is grouped before it is indexed
    step_ms: int = 100  # quiet time that ends a burst (an editor's save storm takes a few ms)
    reconcile_s: float = 600.0  # a full stat walk of every folder this often
    poll_s: float = 30.0  # folders without events (network, FUSE): a stat walk this often
    burst_paths: int = 2000  # more changed paths than this at once: reconcile the folder instead
    keep_alive_s: float | None = 300.0  # unload the model after this long without changes (None: never)
    force_polling: bool = False  # poll every folder (file systems whose type is not recognised)


@dataclass
class WatchStatus:
    """What `status`, /health and MCP `status` say about a watcher."""

    pid: int = field(default_factory=os.getpid)
    started_at: float = field(default_factory=time.time)
    watching: list[str] = field(default_factory=list)  # folders with file-system events
    polling: list[str] = field(default_factory=list)  # folders re-checked every poll_s
    pending: int = 0  # changed paths waiting or being indexed
    last_reconcile_at: float | None = None
    last_change_at: float | None = None  # the last batch that changed the index
    files_indexed: int = 0
    files_removed: int = 0
    error: str | None = None

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


class WatchReport(Protocol):
    """What the watcher tells its face (the CLI prints it; the server logs it)."""

    def said(self, message: str) -> None: ...

    def applied(self, root: Path, summary: IndexSummary, whole: bool) -> None: ...


class LogReport:
    """Reports to the ``edge_embed`` logger (library and server use)."""

    def said(self, message: str) -> None:
        log.warning("watch: %s", message)

    def applied(self, root: Path, summary: IndexSummary, whole: bool) -> None:
        if summary.indexed or summary.removed:
            log.info("watch: %s: %d indexed, %d removed", root, summary.indexed, summary.removed)


# How the watcher changes the index: (folder, relpaths or None for the whole folder).
Apply = Callable[[Path, "frozenset[str] | None"], "IndexSummary"]


def state_path(index_path: Path) -> Path:
    """Where a running watcher publishes its ``WatchStatus`` for other processes."""
    return Path(f"{index_path}.watch.json")


def partial_path(path: Path) -> Path:
    """Where a file is written before it replaces ``path`` whole."""
    return path.with_name(path.name + ".tmp")


def read_watch_state(index_path: Path) -> dict[str, object] | None:
    """The status of the watcher of this index, or None when none runs (a killed one too)."""
    try:
        state = json.loads(state_path(index_path).read_text())
        pid = int(state["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    try:
        os.kill(pid, 0)
    except PermissionError:  # alive, another user's
        pass
    except OSError:  # gone without cleaning up (kill -9)
        return None
    return state


def file_system_type(path: Path, mounts: str = "/proc/mounts") -> str | None:
    """The type of the file system holding ``path`` (Linux; None elsewhere or unknown)."""
    try:
        lines = Path(mounts).read_text().splitlines()
    except OSError:
        return None
    best, fs_type = "", None
    target = str(path)
    for line in lines:
        fields = line.split()
        if len(fields) < 3:
            continue
        mount_point = fields[1].replace("\\040", " ")
        inside = target == mount_point or target.startswith(mount_point.rstrip("/") + "/")
        if inside and len(mount_point) >= len(best):
            best, fs_type = mount_point, fields[2]
    return fs_type


def sends_no_events(fs_type: str | None) -> bool:
    """Network and FUSE file systems: changes made by another machine or daemon are silent."""
    return fs_type is not None and (fs_type in NO_EVENT_FILE_SYSTEMS or fs_type.startswith("fuse."))


def may_matter(relpath: str, hidden: bool) -> bool:
    """A cheap first cut of event paths by name (VCS metadata, generated folders, hidden
    names); the indexer's walk applies every rule to what passes."""
    parts = relpath.split("/")
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if part in VCS_NAMES or (not last and part in GENERATED_DIR_NAMES):
            return False
        if not hidden and part.startswith(".") and not (last and part in IGNORE_FILE_NAMES):
            return False
    return True


class Watcher:
    """Watches folders and applies their changes to one index until ``stop`` is set."""

    def __init__(
        self,
        roots: Collection[Path],
        apply: Apply,
        settings: WatchSettings = WatchSettings(),
        *,
        report: WatchReport | None = None,
        hidden: bool = False,
        ignored: Collection[Path] = (),
        publish_to: Path | None = None,
        on_idle: Callable[[], None] | None = None,
    ) -> None:
        self.roots = [Path(root) for root in roots]
        self.apply = apply
        self.settings = settings
        self.report = report or LogReport()
        self.hidden = hidden
        self.ignored = {str(path) for path in ignored}  # the index's own files: writing them is no change
        self.publish_to = publish_to
        self.on_idle = on_idle  # e.g. unload the model after keep_alive_s without changes
        self.status = WatchStatus()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._pending: dict[Path, set[str] | None] = {}  # None: reconcile the whole folder
        self._next_reconcile: dict[Path, float] = {}
        self._feeds: list[threading.Thread] = []
        self._last_work = time.monotonic()
        self._idle = True
        self._published = ""  # the status last written to publish_to

    # ------------------------------------------------------------------ main loop
    def run(self, stop: threading.Event) -> None:
        """Block until ``stop``: reconcile every folder, then apply changes as they come."""
        self._stop = stop
        for root in self.roots:
            self._start_feed(root)
        try:
            while not stop.is_set():
                self._apply_pending()
                self._queue_due_reconciles()
                if not self._has_pending():
                    self._publish()
                    self._wait_for_work()
        finally:
            stop.set()
            for feed in self._feeds:
                feed.join(timeout=10)
            self._unpublish()

    def _wait_for_work(self) -> None:
        now = time.monotonic()
        wait = min(self._next_reconcile.values(), default=now + 60) - now
        if not self._idle and self.settings.keep_alive_s is not None:
            idle_at = self._last_work + self.settings.keep_alive_s
            if now >= idle_at:
                self._idle = True
                if self.on_idle is not None:
                    self.on_idle()
            else:
                wait = min(wait, idle_at - now)
        self._wake.wait(min(max(wait, 0.0), STOP_CHECK_S))  # ``stop`` is the caller's: look at it now and then
        self._wake.clear()

    def _apply_pending(self) -> None:
        with self._lock:
            batch, self._pending = self._pending, {}
            self.status.pending = sum(len(paths) if paths is not None else 1 for paths in batch.values())
        if batch:
            self._publish()
        for root, relpaths in batch.items():
            if self._stop.is_set():
                break
            self._apply(root, None if relpaths is None else frozenset(relpaths))
        self.status.pending = 0

    def _apply(self, root: Path, relpaths: frozenset[str] | None) -> None:
        whole = relpaths is None
        if whole:
            self._next_reconcile[root] = time.monotonic() + self._reconcile_interval(root)
        try:
            summary = self.apply(root, relpaths)
        except EdgeEmbedError as exc:
            self.status.error = str(exc)
            self.report.said(f"{root}: {exc}")
            return
        self.status.error = None
        self._last_work, self._idle = time.monotonic(), False
        if whole:
            self.status.last_reconcile_at = time.time()
        if summary.indexed or summary.removed:
            self.status.last_change_at = time.time()
            self.status.files_indexed += summary.indexed
            self.status.files_removed += summary.removed
        self.report.applied(root, summary, whole)

    def _queue_due_reconciles(self) -> None:
        now = time.monotonic()
        for root, due in list(self._next_reconcile.items()):
            if now >= due:
                self._request_reconcile(root)

    def _reconcile_interval(self, root: Path) -> float:
        return self.settings.poll_s if str(root) in self.status.polling else self.settings.reconcile_s

    def _has_pending(self) -> bool:
        with self._lock:
            return bool(self._pending)

    def _publish(self) -> None:
        """Write the status for `status` in other processes (atomically: never half a file),
        when it changed."""
        document = json.dumps(self.status.to_dict())
        if self.publish_to is None or document == self._published:
            return  # an idle loop writes nothing
        partial = partial_path(self.publish_to)
        try:
            partial.write_text(document)
            os.replace(partial, self.publish_to)
            self._published = document
        except OSError as exc:  # a read-only folder: the watcher works on, unseen
            log.debug("cannot publish the watch status: %s", exc)

    def _unpublish(self) -> None:
        if self.publish_to is not None:
            self.publish_to.unlink(missing_ok=True)

    # ------------------------------------------------------------------ hints
    def _request_reconcile(self, root: Path) -> None:
        with self._lock:
            self._pending[root] = None
        self._wake.set()

    def _hint(self, root: Path, paths: Collection[str]) -> None:
        """Changed absolute paths under ``root`` become pending relpaths (coalesced)."""
        relpaths = {relpath for relpath in map(lambda path: self._relpath(root, path), paths) if relpath is not None}
        if not relpaths:
            return
        with self._lock:
            pending = self._pending.setdefault(root, set())
            if pending is not None:
                pending.update(relpaths)
                if "" in pending or len(pending) > self.settings.burst_paths:
                    self._pending[root] = None  # too many to trust the events (an overflow?): walk it all
        self._wake.set()

    def _relpath(self, root: Path, path: str) -> str | None:
        if path in self.ignored:
            return None
        relpath = os.path.relpath(path, root)
        if relpath == ".":
            return ""
        relpath = relpath.replace(os.sep, "/")
        if relpath.startswith("../"):
            return None
        return relpath if may_matter(relpath, self.hidden) else None

    # ------------------------------------------------------------------ feeds
    def _start_feed(self, root: Path) -> None:
        fs_type = file_system_type(root)
        if self.settings.force_polling or sends_no_events(fs_type):
            why = f"{root} is on {fs_type}, which sends no change events" if sends_no_events(fs_type) else f"polling {root} as asked"
            self._poll(root, why)
            self._request_reconcile(root)
            return
        feed = threading.Thread(target=self._feed, args=(root,), name=f"edge-embed-watch {root}", daemon=True)
        self._feeds.append(feed)
        feed.start()

    def _poll(self, root: Path, why: str) -> None:
        """Said once: this folder is re-checked every poll_s instead of watched."""
        if str(root) in self.status.polling:
            return
        if str(root) in self.status.watching:
            self.status.watching.remove(str(root))
        self.status.polling.append(str(root))
        self.report.said(f"{why}: checking it every {self.settings.poll_s:g}s instead")

    def _feed(self, root: Path) -> None:
        """Events of one folder, for as long as it runs; a dropped watch is set up again."""
        while not self._stop.is_set():
            identity = _identity(root)
            if identity is None:  # missing: nothing to watch until it comes back
                self._stop.wait(min(self.settings.poll_s, MISSING_CHECK_S))
                continue
            try:
                self._watch_until_dropped(root, identity)
            except (OSError, RuntimeError) as exc:  # e.g. the inotify watch limit
                self._poll(root, f"cannot watch {root} ({exc})")
                self._request_reconcile(root)
                return

    def _watch_until_dropped(self, root: Path, identity: tuple[int, int]) -> None:
        """Feed events until stop, or until the folder is no longer the one watched
        (deleted, moved away, unmounted or mounted over).

        Once the watch is up (its first answer), a reconcile covers what happened before
        it: at start, and while a dropped watch was gone.
        """
        import watchfiles

        if str(root) not in self.status.watching:
            self.status.watching.append(str(root))
        established = False
        for changes in watchfiles.watch(
            root,
            watch_filter=None,
            debounce=self.settings.debounce_ms,
            step=self.settings.step_ms,
            stop_event=self._stop,
            rust_timeout=WATCH_TICK_MS,
            yield_on_timeout=True,
            raise_interrupt=False,
            ignore_permission_denied=True,
        ):
            if not established:
                established = True
                self._request_reconcile(root)
            if changes:
                self._hint(root, [path for _change, path in changes])
            if _identity(root) != identity:
                return


def _identity(root: Path) -> tuple[int, int] | None:
    """The folder's (device, inode): another value means another folder now sits there."""
    try:
        st = os.stat(root)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)
